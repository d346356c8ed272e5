//! A small subset of Go templates for `--format`: `{{.Field}}`, `{{.A.B}}`, `{{json .X}}`,
//! `{{ .Field }}` with spaces, `\t` and `\n` escapes, and a leading `table` (dropped).

use serde_json::Value;

/// Renders `tmpl` against `v`. Unknown fields print as `<no value>`, as Go does.
pub fn render(tmpl: &str, v: &Value) -> String {
    let t = tmpl.strip_prefix("table").map(str::trim_start).unwrap_or(tmpl);
    let t = t.replace("\\t", "\t").replace("\\n", "\n");
    let mut out = String::new();
    let mut rest = t.as_str();
    while let Some(i) = rest.find("{{") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let Some(j) = after.find("}}") else {
            out.push_str(&rest[i..]);
            return out;
        };
        out.push_str(&action(after[..j].trim(), v));
        rest = &after[j + 2..];
    }
    out.push_str(rest);
    out
}

fn action(a: &str, v: &Value) -> String {
    if let Some(path) = a.strip_prefix("json ") {
        return lookup(path.trim(), v).map(|x| x.to_string()).unwrap_or_else(|| "null".into());
    }
    match lookup(a, v) {
        Some(x) => plain(x),
        None => "<no value>".into(),
    }
}

fn lookup<'a>(path: &str, v: &'a Value) -> Option<&'a Value> {
    if path == "." {
        return Some(v);
    }
    let mut cur = v;
    for part in path.strip_prefix('.')?.split('.') {
        cur = cur.get(part)?;
    }
    Some(cur)
}

/// Go's default printing: strings bare, maps as `map[k:v]`, arrays as `[a b]`.
fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "<nil>".into(),
        Value::Array(a) => format!("[{}]", a.iter().map(plain).collect::<Vec<_>>().join(" ")),
        Value::Object(m) => {
            format!("map[{}]", m.iter().map(|(k, x)| format!("{k}:{}", plain(x))).collect::<Vec<_>>().join(" "))
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_paths_json() {
        let v = serde_json::json!({"ID": "abc", "State": {"Status": "running", "Pid": 7}, "L": {"a": "1"}});
        assert_eq!(render("{{.ID}} {{ .State.Status }}\\t{{.State.Pid}}", &v), "abc running\t7");
        assert_eq!(render("table {{.ID}}", &v), "abc");
        assert_eq!(render("{{json .L}}", &v), r#"{"a":"1"}"#);
        assert_eq!(render("{{.L}} {{.Nope}}", &v), "map[a:1] <no value>");
    }
}
