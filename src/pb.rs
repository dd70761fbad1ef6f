//! Generated protobuf and gRPC code for `billpay.v1`, and the descriptor set served by
//! reflection.

#![allow(clippy::all, missing_docs)]

/// `billpay.v1` messages, enums, clients and servers.
pub mod billpay {
    pub mod v1 {
        tonic::include_proto!("billpay.v1");
    }
}

pub use billpay::v1::*;

/// Encoded `FileDescriptorSet` of our protos and their imports, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("billpay_descriptor");
