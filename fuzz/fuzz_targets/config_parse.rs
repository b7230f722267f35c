//! Server configuration parsing: arguments (NUL-separated) and an environment (`KEY=VALUE`
//! lines after a `\n\n` separator) from arbitrary bytes give a configuration, help, version or
//! a one-line error — never a panic.
#![no_main]

use golectra_server::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (args, env) = text.split_once("\n\n").unwrap_or((&text, ""));
    let args: Vec<String> = args
        .split('\0')
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
        .collect();
    let env: Vec<(String, String)> = env
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    // The listen address may be a host name, and resolving it could touch the network: the
    // address setting is left out (its parser has unit tests).
    let is_address = |a: &String| {
        let name = a.trim_start_matches('-').split('=').next().unwrap_or("");
        a.starts_with('-') && (name == "a" || name == "address")
    };
    let args: Vec<String> = args.into_iter().filter(|a| !is_address(a)).collect();
    let env: Vec<(String, String)> = env.into_iter().filter(|(k, _)| k != "ADDRESS").collect();
    let lookup = |key: &str| env.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    if let Err(e) = Config::from_sources(args, lookup) {
        assert!(!e.0.contains('\n'), "multi-line error: {e}");
    }
});
