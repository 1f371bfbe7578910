//! Network names (`spec.networkName`, Multus `networkName`) and namespaced references.
//!
//! A network name is `<namespace>/<name>` or just `<name>`. KubeVirt resolves a bare name in
//! the VM's own namespace; upstream's controller looked it up with an empty namespace (and
//! failed) while its webhook used `default`. We resolve it in the namespace of the object that
//! names it, everywhere.

use std::collections::BTreeMap;
use std::fmt;

use crate::Error;
use crate::consts::{LABEL_IPPOOL_NAME, LABEL_IPPOOL_NAMESPACE};

/// A namespace and a name, displayed as `<namespace>/<name>`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NamespacedName {
    /// The namespace.
    pub namespace: String,
    /// The name.
    pub name: String,
}

impl NamespacedName {
    /// A reference from its parts.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for NamespacedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Splits a network name on its **last** `/` (as upstream's `kv.RSplit`) and resolves a
/// missing or empty namespace to `default_namespace`: the namespace of the object that names
/// the network (KubeVirt semantics), not `default`.
///
/// # Errors
/// [`Error::InvalidNetworkName`] when the name part is empty.
///
/// ```
/// use vmdhcp_api::network::{NamespacedName, resolve_network_name};
///
/// assert_eq!(resolve_network_name("default/net-48", "vms")?, NamespacedName::new("default", "net-48"));
/// assert_eq!(resolve_network_name("net-48", "vms")?, NamespacedName::new("vms", "net-48"));
/// assert_eq!(resolve_network_name("a/b/c", "vms")?, NamespacedName::new("a/b", "c"));
/// assert!(resolve_network_name("default/", "vms").is_err());
/// # Ok::<(), vmdhcp_api::Error>(())
/// ```
pub fn resolve_network_name(
    network: &str,
    default_namespace: &str,
) -> Result<NamespacedName, Error> {
    let (namespace, name) = network.rsplit_once('/').unwrap_or(("", network));
    if name.is_empty() {
        return Err(Error::InvalidNetworkName {
            input: network.to_owned(),
        });
    }
    let namespace = if namespace.is_empty() {
        default_namespace
    } else {
        namespace
    };
    Ok(NamespacedName::new(namespace, name))
}

/// The IPPool a NetworkAttachmentDefinition's labels point to (both
/// [`LABEL_IPPOOL_NAMESPACE`] and [`LABEL_IPPOOL_NAME`] set), if any.
///
/// ```
/// use std::collections::BTreeMap;
/// use vmdhcp_api::network::{NamespacedName, pool_ref_from_nad_labels};
///
/// let labels = BTreeMap::from([
///     ("network.harvesterhci.io/ippool-namespace".to_string(), "default".to_string()),
///     ("network.harvesterhci.io/ippool-name".to_string(), "net-48".to_string()),
/// ]);
/// assert_eq!(pool_ref_from_nad_labels(&labels), Some(NamespacedName::new("default", "net-48")));
/// assert_eq!(pool_ref_from_nad_labels(&BTreeMap::new()), None);
/// ```
pub fn pool_ref_from_nad_labels(labels: &BTreeMap<String, String>) -> Option<NamespacedName> {
    Some(NamespacedName::new(
        labels.get(LABEL_IPPOOL_NAMESPACE)?,
        labels.get(LABEL_IPPOOL_NAME)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case::qualified("default/net-48", "ns", ("default", "net-48"))]
    #[case::bare_uses_object_namespace("net-48", "ns", ("ns", "net-48"))]
    #[case::empty_namespace_part("/net-48", "ns", ("ns", "net-48"))]
    #[case::splits_on_last_slash("a/b/net", "ns", ("a/b", "net"))]
    fn resolves(#[case] input: &str, #[case] default_ns: &str, #[case] want: (&str, &str)) {
        assert_eq!(
            resolve_network_name(input, default_ns).unwrap(),
            NamespacedName::new(want.0, want.1)
        );
    }

    #[rstest]
    #[case::empty("")]
    #[case::trailing_slash("default/")]
    fn rejects_empty_name(#[case] input: &str) {
        assert_eq!(
            resolve_network_name(input, "ns").unwrap_err(),
            Error::InvalidNetworkName {
                input: input.into()
            }
        );
    }

    #[test]
    fn pool_ref_needs_both_labels() {
        let only_ns = BTreeMap::from([(LABEL_IPPOOL_NAMESPACE.to_owned(), "default".to_owned())]);
        assert_eq!(pool_ref_from_nad_labels(&only_ns), None);
        assert_eq!(NamespacedName::new("a", "b").to_string(), "a/b");
    }
}
