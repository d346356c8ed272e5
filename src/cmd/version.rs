/// `nook version`
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Output format: json.
    #[arg(short = 'f', long)]
    format: Option<String>,
}

pub fn run(a: &Args) -> anyhow::Result<i32> {
    let os_arch = format!("{}/{}", std::env::consts::OS, nook::image::config::host_arch());
    if a.format.as_deref() == Some("json") {
        println!("{}", serde_json::json!({ "Client": { "Version": nook::VERSION, "OsArch": os_arch } }));
    } else {
        println!("Version:      {}", nook::VERSION);
        println!("OS/Arch:      {os_arch}");
    }
    Ok(0)
}
