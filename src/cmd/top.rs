use nook::context::Context;
use nook::util::fmt::Table;

/// `nook top CONTAINER [DESCRIPTORS...]`
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The container (name or ID).
    container: String,
    /// Columns, psgo style (user, pid, ppid, pcpu, etime, tty, time, args, comm, group, huser,
    /// hgroup, hpid, nice, pgid, ruser, rgroup, state, vsz; or %U, %p, …), comma-separated or
    /// one per argument.
    descriptors: Vec<String>,
}

pub fn run(ctx: &Context, a: &Args) -> anyhow::Result<i32> {
    let rows = nook::container::top::top(ctx, &a.container, &a.descriptors)?;
    let mut it = rows.into_iter();
    let header: Vec<String> = it.next().unwrap_or_default();
    let mut t = Table::new(&header.iter().map(String::as_str).collect::<Vec<_>>());
    for r in it {
        t.row(r);
    }
    print!("{}", t.render());
    Ok(0)
}
