//! Which sources a view may name.
//!
//! A view's `sheet_url` is written by another application (the dashboard's
//! admin UI), so it is untrusted input: left unchecked it could make
//! sheetsync read `/etc/shadow` or a cloud metadata endpoint and copy what it
//! found into reports. Google Sheets links and ids (read through the API) and
//! Google's public CSV export links are always allowed; files only under the
//! configured roots; other hosts only when listed; and no download may reach
//! a loopback, private, link-local or metadata address unless its network is
//! explicitly allowed, checked on the resolved address and on every
//! redirect. (Through an HTTP proxy from the environment, the proxy resolves
//! the names: the address check then only applies to the proxy.)

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use reqwest::Url;

use serde::Deserialize;

use super::beneath::{escaped, open_beneath};
use super::spec::SourceSpec;
use super::workbook::WorkbookLimits;

/// The most redirects one download follows.
const MAX_REDIRECTS: usize = 10;

/// Why a source was refused; each message names the setting that allows it.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    #[error(
        "the file {path} is outside the directories sheetsync may read (or its directory does not exist); list \
         its directory in [sources] file_roots (or SHEETSYNC_FILE_ROOTS) if it should be synced"
    )]
    FileOutsideRoots { path: String },
    #[error(
        "downloads from {host} are not allowed: add it to [sources] http_hosts (or SHEETSYNC_HTTP_HOSTS); Google \
         Sheets links and Google's public CSV export links need no setting"
    )]
    HostNotAllowed { host: String },
    #[error(
        "{host} is a loopback, private, link-local or metadata address, which sources may not reach; add its \
         network to [sources] allowed_networks (or SHEETSYNC_ALLOWED_NETWORKS) if it is yours"
    )]
    InternalAddress { host: String },
}

/// Why an admitted file could not be opened.
#[derive(Debug)]
pub enum FileOpenError {
    /// The path leads out of every root now (a symlink swapped in).
    Refused(PolicyError),
    /// Missing, unreadable, not a regular file...
    Io(std::io::Error),
}

/// A network in CIDR notation: `10.0.0.0/8`, `::1/128`, or one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    base: IpAddr,
    prefix: u8,
}

impl Network {
    pub fn parse(text: &str) -> Option<Network> {
        let (address, prefix) = match text.trim().split_once('/') {
            Some((address, prefix)) => (address, Some(prefix.parse::<u8>().ok()?)),
            None => (text.trim(), None),
        };
        let base: IpAddr = address.parse().ok()?;
        let width = if base.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(width);
        (prefix <= width).then_some(Network { base, prefix })
    }

    pub fn contains(&self, address: IpAddr) -> bool {
        let (address, base, width) = match (canonical(address), self.base) {
            (IpAddr::V4(address), IpAddr::V4(base)) => {
                (u128::from(u32::from(address)), u128::from(u32::from(base)), 32)
            }
            (IpAddr::V6(address), IpAddr::V6(base)) => (u128::from(address), u128::from(base), 128),
            _ => return false,
        };
        let host_bits = width - u32::from(self.prefix);
        // A u128 cannot be shifted by 128: a /0 network holds every address.
        host_bits >= 128 || address >> host_bits == base >> host_bits
    }
}

/// An IPv4 address written as IPv6 (`::ffff:127.0.0.1`) is the IPv4 one.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        v4 => v4,
    }
}

/// Loopback, private, link-local (cloud metadata: 169.254.169.254,
/// fd00:ec2::254), carrier-grade NAT, unspecified, multicast and reserved
/// addresses: what a source on the internet never is.
pub fn is_internal(address: IpAddr) -> bool {
    match canonical(address) {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_documentation()
                || a == 0
                || a >= 240
                || (a == 100 && (64..128).contains(&b))
                || (a == 198 && (b == 18 || b == 19))
                || (a == 192 && b == 0 && v4.octets()[2] == 0)
        }
        IpAddr::V6(v6) => {
            let segments = v6.segments();
            let embedded = |high: u16, low: u16| {
                is_internal(IpAddr::V4(std::net::Ipv4Addr::from(
                    (u32::from(high) << 16) | u32::from(low),
                )))
            };
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (segments[0] & 0xfe00) == 0xfc00 // unique local (fd00:ec2::254)
                || (segments[0] & 0xffc0) == 0xfe80 // link-local
                || (segments[0] & 0xffc0) == 0xfec0 // site-local
                || (segments[0] == 0x2001 && segments[1] == 0) // Teredo
                || (segments[0] == 0x64 && segments[1] == 0xff9b && segments[2] == 1) // local NAT64
                // NAT64, 6to4 and IPv4-compatible forms carry an IPv4 address.
                || (segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] && embedded(segments[6], segments[7]))
                || (segments[0] == 0x2002 && embedded(segments[1], segments[2]))
                || (segments[..6] == [0; 6] && embedded(segments[6], segments[7]))
        }
    }
}

/// The `[sources]` section: what a view's source may be. Views come from
/// another application, so only what is listed here, Google Sheets links and
/// Google's public CSV exports are read.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SourcesSettings {
    /// Directories under which `file://` and plain-path sources may be read
    /// (`SHEETSYNC_FILE_ROOTS`, `:`-separated, wins). None by default.
    pub file_roots: Vec<PathBuf>,
    /// Hosts CSV may be downloaded from besides Google's export links
    /// (`SHEETSYNC_HTTP_HOSTS`, `,`-separated, wins).
    pub http_hosts: Vec<String>,
    /// Networks (CIDR) a download may reach although they are loopback,
    /// private or link-local (`SHEETSYNC_ALLOWED_NETWORKS` wins).
    pub allowed_networks: Vec<String>,
    /// A download larger than this fails its view; a workbook file too.
    pub max_download_bytes: u64,
    /// A workbook whose parts inflate past this in all is refused.
    pub max_workbook_unpacked_bytes: u64,
    /// A workbook with one part (a sheet, its shared strings) inflating
    /// past this is refused.
    pub max_workbook_part_bytes: u64,
    /// A workbook archive with more parts than this is refused.
    pub max_workbook_parts: usize,
    /// An `.xls` or `.ods` sheet, read whole, whose grid (first to last
    /// used cell) would hold more cells than this is refused.
    pub max_workbook_cells: u64,
}

impl Default for SourcesSettings {
    fn default() -> Self {
        SourcesSettings {
            file_roots: Vec::new(),
            http_hosts: Vec::new(),
            allowed_networks: Vec::new(),
            max_download_bytes: 256 * 1024 * 1024,
            max_workbook_unpacked_bytes: 2 * 1024 * 1024 * 1024,
            max_workbook_part_bytes: 1024 * 1024 * 1024,
            max_workbook_parts: 10_000,
            max_workbook_cells: 20_000_000,
        }
    }
}

impl SourcesSettings {
    /// Puts the environment's lists on top of the file's. `env` answers only
    /// variables set to something non-blank.
    pub fn apply_env(&mut self, env: &impl Fn(&str) -> Option<String>) {
        if let Some(roots) = env("SHEETSYNC_FILE_ROOTS") {
            self.file_roots = roots
                .split(':')
                .filter(|root| !root.is_empty())
                .map(PathBuf::from)
                .collect();
        }
        let list = |text: String| -> Vec<String> {
            text.split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(str::to_owned)
                .collect()
        };
        if let Some(hosts) = env("SHEETSYNC_HTTP_HOSTS") {
            self.http_hosts = list(hosts);
        }
        if let Some(networks) = env("SHEETSYNC_ALLOWED_NETWORKS") {
            self.allowed_networks = list(networks);
        }
    }

    /// Every setting that is out of range, each naming what to change.
    pub fn problems(&self) -> Vec<String> {
        let mut problems: Vec<String> = self
            .allowed_networks
            .iter()
            .filter(|network| Network::parse(network).is_none())
            .map(|network| {
                format!("sources.allowed_networks: {network:?} is not a network like \"10.0.0.0/8\" or \"::1/128\"")
            })
            .collect();
        if self.max_download_bytes == 0 {
            problems.push("sources.max_download_bytes must be at least 1".to_owned());
        }
        if self.max_workbook_unpacked_bytes == 0
            || self.max_workbook_part_bytes == 0
            || self.max_workbook_parts == 0
            || self.max_workbook_cells == 0
        {
            problems.push(
                "sources.max_workbook_unpacked_bytes, max_workbook_part_bytes, max_workbook_parts and \
                 max_workbook_cells must each be at least 1"
                    .to_owned(),
            );
        }
        problems
    }
}

/// The rules, from `[sources]`.
#[derive(Debug, Clone)]
pub struct SourcePolicy {
    file_roots: Vec<PathBuf>,
    http_hosts: Vec<String>,
    allowed_networks: Vec<Network>,
    pub max_download_bytes: u64,
    pub workbook_limits: WorkbookLimits,
}

impl SourcePolicy {
    /// The policy of validated settings (see [`SourcesSettings::problems`]).
    pub fn new(settings: &SourcesSettings) -> SourcePolicy {
        SourcePolicy {
            file_roots: settings.file_roots.clone(),
            http_hosts: settings
                .http_hosts
                .iter()
                .map(|host| host.trim().to_ascii_lowercase())
                .collect(),
            allowed_networks: settings
                .allowed_networks
                .iter()
                .filter_map(|text| Network::parse(text))
                .collect(),
            max_download_bytes: settings.max_download_bytes,
            workbook_limits: WorkbookLimits {
                max_bytes: settings.max_download_bytes,
                max_unpacked_bytes: settings.max_workbook_unpacked_bytes,
                max_part_bytes: settings.max_workbook_part_bytes,
                max_parts: settings.max_workbook_parts,
                max_cells: settings.max_workbook_cells,
            },
        }
    }

    /// `spec` if the policy allows it, with a file's path made canonical (so
    /// that what is read is what was checked: no `..`, no symlink out).
    pub fn admit(&self, spec: SourceSpec) -> Result<SourceSpec, PolicyError> {
        match spec {
            SourceSpec::GoogleSheet(_) => Ok(spec),
            SourceSpec::File { path, sheet_name } => {
                self.admit_file(&path).map(|path| SourceSpec::File { path, sheet_name })
            }
            SourceSpec::Download { url, sheet_name } => {
                let parsed = Url::parse(&url).map_err(|_| PolicyError::HostNotAllowed { host: url.clone() })?;
                self.admit_url(&parsed, false)?;
                Ok(SourceSpec::Download { url, sheet_name })
            }
        }
    }

    /// A file that does not exist yet is judged by its directory, so that
    /// its read fails later like any missing export; and whether a file
    /// outside the roots exists is never told.
    fn admit_file(&self, path: &Path) -> Result<PathBuf, PolicyError> {
        let canonical = path.canonicalize().ok().or_else(|| {
            let directory = path.parent()?.canonicalize().ok()?;
            Some(directory.join(path.file_name()?))
        });
        let under_a_root = |canonical: &PathBuf| {
            self.file_roots
                .iter()
                .filter_map(|root| root.canonicalize().ok())
                .any(|root| canonical.starts_with(root))
        };
        // A FIFO or a device under a root would block or never end a read.
        let readable = |canonical: &PathBuf| std::fs::metadata(canonical).map_or(true, |meta| meta.is_file());
        match canonical {
            Some(canonical) if under_a_root(&canonical) && readable(&canonical) => Ok(canonical),
            _ => Err(PolicyError::FileOutsideRoots {
                path: path.display().to_string(),
            }),
        }
    }

    /// Opens an admitted file (a canonical path under a root) beneath the
    /// root it is under, so that a directory swapped for a symlink since the
    /// check cannot lead the open out of it (`beneath`).
    pub fn open_file(&self, path: &Path) -> Result<std::fs::File, FileOpenError> {
        let outside = || {
            FileOpenError::Refused(PolicyError::FileOutsideRoots {
                path: path.display().to_string(),
            })
        };
        let (root, relative) = self
            .file_roots
            .iter()
            .filter_map(|root| root.canonicalize().ok())
            .find_map(|root| {
                let relative = path.strip_prefix(&root).ok()?.to_path_buf();
                Some((root, relative))
            })
            .ok_or_else(outside)?;
        open_beneath(&root, &relative).map_err(|error| {
            if escaped(&error) {
                outside()
            } else {
                FileOpenError::Io(error)
            }
        })
    }

    /// A download URL, first or redirected to: its host must be Google's
    /// export host (or, after a redirect, Google's content host) or listed,
    /// and an address written in it must not be internal. (Names are checked
    /// once resolved, by [`GuardedResolver`].)
    fn admit_url(&self, url: &Url, redirected: bool) -> Result<(), PolicyError> {
        let host = url
            .host_str()
            .unwrap_or_default()
            .trim_matches(['[', ']'])
            .to_ascii_lowercase();
        if let Ok(address) = host.parse::<IpAddr>()
            && is_internal(address)
            && !self.network_allowed(address)
        {
            return Err(PolicyError::InternalAddress { host });
        }
        let google = host == "docs.google.com" && super::spec::is_csv_export(url)
            || redirected && (host == "docs.google.com" || host.ends_with(".googleusercontent.com"));
        if google || self.http_hosts.contains(&host) {
            Ok(())
        } else {
            Err(PolicyError::HostNotAllowed { host })
        }
    }

    fn network_allowed(&self, address: IpAddr) -> bool {
        self.allowed_networks.iter().any(|network| network.contains(address))
    }

    /// The redirect rule of the download client: every hop is admitted like
    /// the first URL, at most [`MAX_REDIRECTS`] of them.
    pub fn redirects(self: &Arc<Self>) -> reqwest::redirect::Policy {
        let policy = Arc::clone(self);
        reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= MAX_REDIRECTS {
                return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
            }
            match policy.admit_url(attempt.url(), true) {
                Ok(()) => attempt.follow(),
                Err(refusal) => attempt.error(format!("redirected to a refused address: {refusal}")),
            }
        })
    }
}

/// Resolves host names for the HTTP client, keeping only addresses a source
/// may reach: a listed host whose name points at `127.0.0.1` or
/// `169.254.169.254` (DNS rebinding included, since the check is on each
/// resolution) is refused.
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    pub policy: Arc<SourcePolicy>,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = Arc::clone(&self.policy);
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = found
                .iter()
                .copied()
                .filter(|address| !is_internal(address.ip()) || policy.network_allowed(address.ip()))
                .collect();
            if allowed.is_empty() && !found.is_empty() {
                return Err(Box::new(PolicyError::InternalAddress { host }) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(roots: &[&Path], hosts: &[&str], networks: &[&str]) -> SourcePolicy {
        SourcePolicy::new(&SourcesSettings {
            file_roots: roots.iter().map(|root| root.to_path_buf()).collect(),
            http_hosts: hosts.iter().map(|host| host.to_string()).collect(),
            allowed_networks: networks.iter().map(|network| network.to_string()).collect(),
            ..SourcesSettings::default()
        })
    }

    fn file_spec(path: PathBuf) -> SourceSpec {
        SourceSpec::File { path, sheet_name: None }
    }

    fn http(url: &str) -> SourceSpec {
        SourceSpec::Download {
            url: url.to_owned(),
            sheet_name: None,
        }
    }

    #[test]
    fn internal_addresses() {
        for internal in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:a9fe:a9fe::1",
            "::a9fe:a9fe",
            "fec0::1",
            "2001:0:4136:e378::1",
            "64:ff9b:1::1",
        ] {
            assert!(is_internal(internal.parse().unwrap()), "{internal}");
        }
        for public in ["8.8.8.8", "142.250.74.14", "2a00:1450:4007:80e::200e"] {
            assert!(!is_internal(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn networks() {
        let loopback = Network::parse("127.0.0.0/8").unwrap();
        assert!(loopback.contains("127.9.9.9".parse().unwrap()));
        assert!(loopback.contains("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!loopback.contains("128.0.0.1".parse().unwrap()));
        let one = Network::parse("10.0.0.5").unwrap();
        assert!(one.contains("10.0.0.5".parse().unwrap()) && !one.contains("10.0.0.6".parse().unwrap()));
        assert!(Network::parse("fd00::/8").unwrap().contains("fd12::1".parse().unwrap()));
        assert!(
            Network::parse("0.0.0.0/0")
                .unwrap()
                .contains("1.2.3.4".parse().unwrap())
        );
        assert_eq!(Network::parse("10.0.0.0/33"), None);
        assert_eq!(Network::parse("nonsense"), None);
    }

    #[test]
    fn files_only_under_a_root() {
        let root = tempfile::tempdir().unwrap();
        let inside = root.path().join("export.csv");
        std::fs::write(&inside, "Client,Stage\n").unwrap();
        let policy = policy(&[root.path()], &[], &[]);
        assert_eq!(
            policy.admit(file_spec(inside.clone())),
            Ok(file_spec(inside.canonicalize().unwrap()))
        );
        let sneaky = root.path().join("../../../../etc/passwd");
        assert!(matches!(
            policy.admit(file_spec(sneaky)),
            Err(PolicyError::FileOutsideRoots { .. })
        ));
        let link = root.path().join("link.csv");
        std::os::unix::fs::symlink("/etc/hostname", &link).unwrap();
        assert!(matches!(
            policy.admit(file_spec(link)),
            Err(PolicyError::FileOutsideRoots { .. })
        ));
        // Missing inside a root: admitted, its read fails later as usual.
        // Missing outside: the same refusal as an existing file gets.
        let missing = root.path().join("not-yet.csv");
        assert!(policy.admit(file_spec(missing)).is_ok());
        assert_eq!(
            policy.admit(file_spec(PathBuf::from("/etc/no-such-file"))),
            policy
                .admit(file_spec(PathBuf::from("/etc/passwd")))
                .map_err(|_| PolicyError::FileOutsideRoots {
                    path: "/etc/no-such-file".into()
                })
        );
    }

    #[test]
    fn hosts_google_exports_and_internal_addresses() {
        let policy = policy(&[], &["exports.example.com", "10.0.0.7"], &["10.0.0.0/24"]);
        let export = "https://docs.google.com/spreadsheets/d/1AbC/export?format=csv&gid=0";
        assert!(policy.admit(http(export)).is_ok());
        assert!(policy.admit(http("https://Exports.Example.com/a.csv")).is_ok());
        assert!(
            policy.admit(http("http://10.0.0.7/a.csv")).is_ok(),
            "listed and allowed"
        );
        assert_eq!(
            policy.admit(http("http://169.254.169.254/latest/meta-data/")),
            Err(PolicyError::InternalAddress {
                host: "169.254.169.254".into()
            })
        );
        assert_eq!(
            policy.admit(http("https://evil.example.net/a.csv")),
            Err(PolicyError::HostNotAllowed {
                host: "evil.example.net".into()
            })
        );
        assert!(matches!(
            policy.admit(http("http://[::1]:8080/a.csv")),
            Err(PolicyError::InternalAddress { .. })
        ));
        let redirect = Url::parse("https://doc-0s-sheets.googleusercontent.com/export/abc").unwrap();
        assert!(policy.admit_url(&redirect, true).is_ok());
        assert!(
            policy.admit_url(&redirect, false).is_err(),
            "only as a redirect of an export"
        );
    }
}
