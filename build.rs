//! Compiles `proto/billpay/v1` into Rust (tonic-prost-build) with the vendored protoc, and writes
//! the descriptor set that server reflection serves. No system protoc is needed; `PROTOC` wins
//! when it is set.

use std::{env, path::PathBuf};

const PROTOS: &[&str] = &[
    "proto/billpay/v1/common.proto",
    "proto/billpay/v1/catalog.proto",
    "proto/billpay/v1/directory.proto",
    "proto/billpay/v1/customer.proto",
    "proto/billpay/v1/payment.proto",
    "proto/billpay/v1/account.proto",
    "proto/billpay/v1/operator.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if env::var_os("PROTOC").is_none() {
        // SAFETY: build scripts are single-threaded; nothing else reads the environment yet.
        unsafe { env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?) };
    }
    let well_known = protoc_bin_vendored::include_path()?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("billpay_descriptor.bin"))
        .compile_protos(
            &PROTOS.iter().map(PathBuf::from).collect::<Vec<_>>(),
            &[PathBuf::from("proto"), well_known],
        )?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
