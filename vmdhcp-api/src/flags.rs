//! Flag values as upstream's Go binaries read them.

use std::convert::Infallible;

/// A boolean as Go's `strconv.ParseBool` reads it (`1`, `t`, `T`, `TRUE`, `true`, `True` are
/// true), with upstream's fallback: anything else — `0`, `false`, `yes`, a typo, empty — is
/// false rather than an error, so an environment variable that the Go binaries accepted never
/// stops ours from starting. Use it as a clap `value_parser` for `--debug`/`--trace`.
///
/// ```
/// use vmdhcp_api::flags::go_bool;
///
/// assert_eq!(go_bool("1"), Ok(true));
/// assert_eq!(go_bool("True"), Ok(true));
/// assert_eq!(go_bool("yes"), Ok(false));
/// assert_eq!(go_bool(""), Ok(false));
/// ```
///
/// # Errors
/// Never; the `Result` is what clap's value parsers return.
pub fn go_bool(value: &str) -> Result<bool, Infallible> {
    Ok(matches!(value, "1" | "t" | "T" | "TRUE" | "true" | "True"))
}

/// The log level `--debug` and `--trace` ask for: `trace` beats `debug` beats `info`.
///
/// ```
/// assert_eq!(vmdhcp_api::flags::log_level(true, true), "trace");
/// assert_eq!(vmdhcp_api::flags::log_level(true, false), "debug");
/// assert_eq!(vmdhcp_api::flags::log_level(false, false), "info");
/// ```
pub fn log_level(debug: bool, trace: bool) -> &'static str {
    if trace {
        "trace"
    } else if debug {
        "debug"
    } else {
        "info"
    }
}
