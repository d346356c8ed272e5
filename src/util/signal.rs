//! Signal names as podman accepts them: `TERM`, `SIGTERM`, `sigterm`, `15`.

use nix::sys::signal::Signal;

/// Parses a signal name or number.
pub fn parse(s: &str) -> Result<Signal, String> {
    let t = s.trim();
    if let Ok(n) = t.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| format!("invalid signal: {s}"));
    }
    let up = t.to_ascii_uppercase();
    let name = if up.starts_with("SIG") { up } else { format!("SIG{up}") };
    name.parse::<Signal>().map_err(|_| format!("invalid signal: {s}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        assert_eq!(parse("TERM"), Ok(Signal::SIGTERM));
        assert_eq!(parse("sigkill"), Ok(Signal::SIGKILL));
        assert_eq!(parse("9"), Ok(Signal::SIGKILL));
        assert_eq!(parse("SIGUSR1"), Ok(Signal::SIGUSR1));
        assert!(parse("NOPE").is_err() && parse("99").is_err());
    }
}
