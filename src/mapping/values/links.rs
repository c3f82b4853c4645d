//! Links that name one real-world object whatever else changes in its row:
//! a CRM deal keeps its URL when the client is respelt or the deal moves to
//! the next stage, so the URL carries the record's identity across refreshes.

use std::hash::{DefaultHasher, Hash, Hasher};

/// A compact, comparable reference to what a link names: the HubSpot deal
/// number of a HubSpot deal link (`/deals/123`, `/deal/123`,
/// `/record/0-3/123`, whatever the portal, regional host or trailing view),
/// else the URL without scheme, `www.`, fragment, trailing `/` and with a
/// lower-case host. `None` for anything that is not an http(s) URL with a
/// host: a placeholder such as `TBD` or `n/a` names nothing, and two records
/// sharing one must never be taken for the same deal.
///
/// Held as a 64-bit digest: it is compared, never shown, and one is kept per
/// record (two links colliding is a 1 in 2^64 chance per pair).
pub fn link_ref(url: &str) -> Option<LinkRef> {
    let url = super::trim(url);
    let is_hubspot = |host: &str| {
        let host = host.as_bytes();
        let suffix = b".hubspot.com";
        host.eq_ignore_ascii_case(&suffix[1..])
            || host.len() >= suffix.len() && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
    };
    let hubspot = match plain_http_host(url) {
        Some(host) => is_hubspot(host),
        None => {
            let parsed = reqwest::Url::parse(url).ok()?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return None;
            }
            is_hubspot(parsed.host_str().filter(|host| !host.is_empty())?)
        }
    };
    let mut hasher = DefaultHasher::new();
    match hubspot_deal(url).filter(|_| hubspot) {
        Some(deal) => ("deal", deal).hash(&mut hasher),
        None => ("url", normalised(url)).hash(&mut hasher),
    }
    // Zero is left out so that an absent link costs no extra byte (the
    // digest 0 reads as 1: one more collision in 2^64).
    Some(LinkRef::new(hasher.finish()).unwrap_or(LinkRef::MIN))
}

/// A record's identity link, as [`link_ref`] digests it: never zero, so
/// `Option<LinkRef>` is 8 bytes, one per record of large sheets.
pub type LinkRef = std::num::NonZeroU64;

/// The host of an `http(s)://` URL whose host is a plain domain name
/// (dot-separated labels of ASCII letters, digits and hyphens) followed by
/// the end, a path, a query or a fragment: what every CRM link looks like,
/// and what the URL parser would accept as it is. Anything else (ports,
/// credentials, IP literals, non-ASCII) is left to the parser.
fn plain_http_host(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"))?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let host = &rest[..end];
    let plain = host
        .split('.')
        .all(|label| !label.is_empty() && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    plain.then_some(host)
}

/// The deal number in a HubSpot deal link's path.
fn hubspot_deal(url: &str) -> Option<u64> {
    let path = url.split(['?', '#']).next()?;
    let mut segments = path.rsplit('/').peekable();
    while let Some(number) = segments.next() {
        if let Some(&("deals" | "deal" | "0-3")) = segments.peek()
            && let Ok(deal) = number.parse()
        {
            return Some(deal);
        }
    }
    None
}

fn normalised(url: &str) -> String {
    let without_fragment = url.split('#').next().unwrap_or(url);
    let rest = without_fragment
        .split_once("://")
        .map_or(without_fragment, |(_, rest)| rest);
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let host = host.to_ascii_lowercase();
    let host = host.strip_prefix("www.").unwrap_or(&host);
    format!("{host}/{}", path.trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_deal_many_spellings() {
        let deal = link_ref("https://app.hubspot.com/deals/12345");
        for same in [
            "http://app.hubspot.com/deals/12345/",
            " https://app-eu1.hubspot.com/contacts/987/deal/12345 ",
            "https://app.hubspot.com/contacts/987/record/0-3/12345/view/1",
            "https://app.hubspot.com/deals/12345?tab=notes#activity",
        ] {
            assert_eq!(link_ref(same), deal, "{same}");
        }
        assert_ne!(link_ref("https://app.hubspot.com/deals/12346"), deal);
        assert_ne!(
            link_ref("https://app.hubspot.com/contacts/987/record/0-1/12345"),
            deal,
            "0-1 is a contact"
        );
    }

    #[test]
    fn the_fast_host_check_agrees_with_the_url_parser() {
        for url in [
            "https://app.hubspot.com/deals/1",
            "http://CRM.Example.com",
            "https://crm.example.com?x=1",
            "https://crm.example.com#top",
            "https://a-b.example.com/x",
            "https://user:pw@crm.example.com/x",
            "https://crm.example.com:8443/x",
            "https://192.168.1.10/x",
            "https://[::1]/x",
            "https:///x",
            "https://exa mple.com/x",
            "https://bücher.example/x",
            "ftp://crm.example.com/x",
        ] {
            let parsed = reqwest::Url::parse(url).ok();
            let by_parser = parsed
                .as_ref()
                .filter(|parsed| matches!(parsed.scheme(), "http" | "https"))
                .and_then(|parsed| parsed.host_str())
                .map(str::to_ascii_lowercase);
            if let Some(host) = plain_http_host(url) {
                assert_eq!(Some(host.to_ascii_lowercase()), by_parser, "{url}");
            }
        }
        assert_eq!(
            plain_http_host("https://crm.example.com:8443/x"),
            None,
            "left to the parser"
        );
    }

    #[test]
    fn other_links_compare_normalised() {
        let crm = link_ref("https://CRM.example.com/opportunity/A-17/");
        assert_eq!(link_ref("http://www.crm.example.com/opportunity/A-17#top"), crm);
        assert_ne!(
            link_ref("https://crm.example.com/opportunity/a-17"),
            crm,
            "paths keep their case"
        );
        assert_eq!(link_ref("   "), None);
    }

    #[test]
    fn placeholders_and_other_crms_are_no_deal() {
        for placeholder in [
            "TBD",
            "n/a",
            "-",
            "x",
            "à créer",
            "mailto:a@b.c",
            "app.hubspot.com/deals/42",
        ] {
            assert_eq!(link_ref(placeholder), None, "{placeholder}");
        }
        assert_ne!(
            link_ref("https://crm.example.com/deals/42"),
            link_ref("https://app.hubspot.com/deals/42"),
            "a deal number counts only on HubSpot's hosts"
        );
    }
}
