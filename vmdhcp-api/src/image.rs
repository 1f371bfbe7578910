//! [`ImageRef`]: the controller's `--image` (agent image) split into repository, tag, digest.
//!
//! Upstream splits on the last `:` after the last `/`, defaults the tag to `latest`, and
//! rejects a trailing `:` and more than two colons. It looks at the whole string, so a digest
//! (`repo@sha256:…`) is taken for a tag and `registry:5000/repo:v1@sha256:…` is rejected. We
//! apply upstream's rules to the part before `@` and keep the digest separately.

use std::fmt;
use std::str::FromStr;

use crate::Error;

/// Tag used when a reference has neither tag nor digest.
pub const DEFAULT_TAG: &str = "latest";

/// A container image reference `repository[:tag][@digest]`.
///
/// ```
/// use vmdhcp_api::image::ImageRef;
///
/// let img: ImageRef = "myregistry.local:5000/rancher/harvester-vm-dhcp-agent:v0.3.3".parse()?;
/// assert_eq!(img.repository, "myregistry.local:5000/rancher/harvester-vm-dhcp-agent");
/// assert_eq!(img.tag.as_deref(), Some("v0.3.3"));
///
/// // No tag: `latest`, as upstream.
/// assert_eq!("rancher/agent".parse::<ImageRef>()?.to_string(), "rancher/agent:latest");
///
/// // Digests stay digests.
/// let pinned: ImageRef = "rancher/agent@sha256:0123abcd".parse()?;
/// assert_eq!((pinned.tag.as_deref(), pinned.digest.as_deref()), (None, Some("sha256:0123abcd")));
/// assert_eq!(pinned.to_string(), "rancher/agent@sha256:0123abcd");
/// # Ok::<(), vmdhcp_api::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ImageRef {
    /// Registry and path, e.g. `rancher/harvester-vm-dhcp-agent`.
    pub repository: String,
    /// The tag, if given.
    pub tag: Option<String>,
    /// The digest (`algorithm:hex`), if given.
    pub digest: Option<String>,
}

impl ImageRef {
    /// The tag, or [`DEFAULT_TAG`] when none was given.
    pub fn tag_or_default(&self) -> &str {
        self.tag.as_deref().unwrap_or(DEFAULT_TAG)
    }
}

impl FromStr for ImageRef {
    type Err = Error;

    /// # Errors
    /// [`Error::ImageColonWithoutTag`], [`Error::ImageMultipleColons`] (upstream's two
    /// messages) and [`Error::ImageMalformed`] for an empty reference, repository or digest.
    fn from_str(image: &str) -> Result<Self, Error> {
        let malformed = |reason| Error::ImageMalformed {
            image: image.to_owned(),
            reason,
        };
        let (name, digest) = match image.split_once('@') {
            Some((name, digest)) => {
                let valid = digest.split_once(':').is_some_and(|(algo, hex)| {
                    !algo.is_empty() && !hex.is_empty() && !hex.contains(':')
                });
                if !valid {
                    return Err(malformed("digest must be <algorithm>:<hex>"));
                }
                (name, Some(digest.to_owned()))
            }
            None => (image, None),
        };
        let (repository, tag) = match name.rfind(':') {
            None => (name, None),
            Some(i) if i == name.len() - 1 => {
                return Err(Error::ImageColonWithoutTag {
                    image: image.to_owned(),
                });
            }
            Some(_) if name.matches(':').count() > 2 => {
                return Err(Error::ImageMultipleColons {
                    image: image.to_owned(),
                });
            }
            // The colon belongs to a registry port (`host:5000/repo`).
            Some(i) if name.rfind('/').is_some_and(|slash| i < slash) => (name, None),
            Some(i) => (&name[..i], Some(name[i + 1..].to_owned())),
        };
        if repository.is_empty() {
            return Err(malformed("empty repository"));
        }
        Ok(Self {
            repository: repository.to_owned(),
            tag,
            digest,
        })
    }
}

impl fmt::Display for ImageRef {
    /// `repository:tag`, `repository@digest` or `repository:tag@digest`; a reference with
    /// neither tag nor digest gets `:latest`, as upstream's `Image.String()`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.repository)?;
        match (&self.tag, &self.digest) {
            (Some(tag), _) => write!(f, ":{tag}")?,
            (None, None) => write!(f, ":{DEFAULT_TAG}")?,
            (None, Some(_)) => {}
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    const REPO: &str = "myregistry.local:5000/rancher/harvester-vm-dhcp-controller";

    #[rstest]
    // Upstream's table (cmd/controller/root_test.go), same inputs and results.
    #[case::registry_and_tag(
        "myregistry.local:5000/rancher/harvester-vm-dhcp-controller:v0.3.3",
        REPO,
        Some("v0.3.3"),
        None
    )]
    #[case::image_and_tag(
        "rancher/harvester-vm-dhcp-controller:v0.3.3",
        "rancher/harvester-vm-dhcp-controller",
        Some("v0.3.3"),
        None
    )]
    #[case::no_tag(
        "rancher/harvester-vm-dhcp-controller",
        "rancher/harvester-vm-dhcp-controller",
        None,
        None
    )]
    #[case::port_no_tag(REPO, REPO, None, None)]
    // Digests, which upstream mis-parses.
    #[case::digest(
        "rancher/agent@sha256:abc123",
        "rancher/agent",
        None,
        Some("sha256:abc123")
    )]
    #[case::tag_and_digest(
        "rancher/agent:v1@sha256:abc123",
        "rancher/agent",
        Some("v1"),
        Some("sha256:abc123")
    )]
    #[case::port_tag_digest(
        "reg:5000/rancher/agent:v1@sha256:abc",
        "reg:5000/rancher/agent",
        Some("v1"),
        Some("sha256:abc")
    )]
    #[case::port_digest(
        "reg:5000/rancher/agent@sha256:abc",
        "reg:5000/rancher/agent",
        None,
        Some("sha256:abc")
    )]
    #[case::bare_name("agent", "agent", None, None)]
    fn parses(
        #[case] input: &str,
        #[case] repository: &str,
        #[case] tag: Option<&str>,
        #[case] digest: Option<&str>,
    ) {
        let img: ImageRef = input.parse().unwrap();
        assert_eq!(img.repository, repository);
        assert_eq!(img.tag.as_deref(), tag);
        assert_eq!(img.digest.as_deref(), digest);
    }

    #[rstest]
    #[case::colon_without_tag(
        "myregistry.local:5000/rancher/harvester-vm-dhcp-controller:",
        "invalid image name: colon without tag"
    )]
    #[case::multiple_colons(
        "myregistry.local:5000/rancher/harvester-vm-dhcp-controller:v0.3.3:latest",
        "invalid image name: multiple colons found"
    )]
    #[case::empty("", "invalid image name: empty repository")]
    #[case::only_tag(":v1", "invalid image name: empty repository")]
    #[case::bad_digest(
        "rancher/agent@sha256",
        "invalid image name: digest must be <algorithm>:<hex>"
    )]
    #[case::empty_digest(
        "rancher/agent@",
        "invalid image name: digest must be <algorithm>:<hex>"
    )]
    fn rejects_with_upstream_message(#[case] input: &str, #[case] message: &str) {
        let err = input.parse::<ImageRef>().unwrap_err().to_string();
        assert!(err.starts_with(message), "{err}");
        assert!(err.contains(&format!("{input:?}")), "{err}");
    }

    #[rstest]
    #[case::tag("rancher/agent:v1", "rancher/agent:v1")]
    #[case::defaults_latest("rancher/agent", "rancher/agent:latest")]
    #[case::digest_only("rancher/agent@sha256:ab", "rancher/agent@sha256:ab")]
    #[case::both("r:5000/agent:v1@sha256:ab", "r:5000/agent:v1@sha256:ab")]
    fn displays(#[case] input: &str, #[case] shown: &str) {
        let img: ImageRef = input.parse().unwrap();
        assert_eq!(img.to_string(), shown);
        assert_eq!(shown.parse::<ImageRef>().unwrap().to_string(), shown);
    }
}
