//! How the domain's values appear in the OpenAPI document of the API
//! (feature `openapi`). The newtypes that serialize as strings say their
//! syntax; the rest derive their schema next to their definition.

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Schema, Type};
use utoipa::{PartialSchema, ToSchema};

use crate::catalog::PortRange;
use crate::matrix::ResolvedMatrix;
use crate::nic::NicName;
use crate::revision::RevisionComment;

/// A string schema with a description and an example.
fn text(description: &str, example: &str, max_length: Option<usize>) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
        .examples([example])
        .max_length(max_length)
        .into()
}

impl PartialSchema for PortRange {
    fn schema() -> RefOr<Schema> {
        text(
            "A port or an inclusive range of ports, 1 to 65535: `5061` or `10000-20000`.",
            "5061",
            Some(11),
        )
    }
}
impl ToSchema for PortRange {}

impl PartialSchema for NicName {
    fn schema() -> RefOr<Schema> {
        text(
            "A network interface name: 1 to 15 bytes of `A-Z a-z 0-9 _ . -`.",
            "eth0",
            Some(15),
        )
    }
}
impl ToSchema for NicName {}

impl PartialSchema for crate::fleet::Label {
    fn schema() -> RefOr<Schema> {
        text(
            "A fleet name (group, site, appliance, NIC role): 1 to 63 of `a-z 0-9 -`, not starting or ending with `-`.",
            "paris",
            Some(63),
        )
    }
}
impl ToSchema for crate::fleet::Label {}

impl PartialSchema for RevisionComment {
    fn schema() -> RefOr<Schema> {
        text(
            "One line (no control character), recorded with the revision.",
            "production layout",
            Some(RevisionComment::MAX_CHARS),
        )
    }
}
impl ToSchema for RevisionComment {}

impl PartialSchema for ResolvedMatrix {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some("Service id -> the NICs it is reachable on."))
            .additional_properties(Some(ArrayBuilder::new().items(NicName::schema())))
            .into()
    }
}
impl ToSchema for ResolvedMatrix {}
