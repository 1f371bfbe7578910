//! Writes the CRDs generated from the `vmdhcp-api` types, one YAML file per CRD.
//!
//! ```text
//! cargo run -p vmdhcp-api --bin crdgen -- deploy/crds   # write deploy/crds/<group>_<plural>.yaml
//! cargo run -p vmdhcp-api --bin crdgen                  # print every CRD to stdout
//! ```

use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn main() -> ExitCode {
    match run(std::env::args_os().nth(1).map(PathBuf::from).as_deref()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("crdgen: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run(dir: Option<&Path>) -> Result<(), Box<dyn std::error::Error>> {
    for crd in vmdhcp_api::crd::crds()? {
        let yaml = vmdhcp_api::crd::to_yaml(&crd)?;
        match dir {
            Some(dir) => {
                let path = dir.join(vmdhcp_api::crd::file_name(&crd));
                std::fs::write(&path, yaml)
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                eprintln!("crdgen: wrote {}", path.display());
            }
            None => print!("{yaml}"),
        }
    }
    Ok(())
}
