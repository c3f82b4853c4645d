//! Keeping secrets out of logs and reports.

/// The URL with any password in its user-info replaced by `***`, and the
/// value of every query parameter not known to be harmless hidden (a signed
/// link's `sig`, `token`, `code`... whatever its name).
///
/// Works on MongoDB connection strings with several hosts, which are not
/// valid URLs to a strict parser.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(index) => url.split_at(index + 3),
        None => ("", url),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rfind('@') {
        Some(at) => {
            let user_info = &authority[..at];
            let user = user_info.split(':').next().unwrap_or("");
            let hidden = if user_info.contains(':') {
                format!("{user}:***")
            } else {
                user.to_owned()
            };
            format!("{hidden}{}", &authority[at..])
        }
        None => authority.to_owned(),
    };
    format!("{scheme}{authority}{}", redact_query(tail))
}

/// Query parameters whose values are never secret: Google export links' and
/// MongoDB connection options'.
const HARMLESS_PARAMETERS: &[&str] = &[
    "gid",
    "format",
    "tqx",
    "sheet",
    "usp",
    "output",
    "single",
    "range",
    "headers",
    "authsource",
    "authmechanism",
    "replicaset",
    "directconnection",
    "tls",
    "ssl",
    "retrywrites",
    "retryreads",
    "w",
    "appname",
    "readpreference",
    "serverselectiontimeoutms",
    "connecttimeoutms",
    "sockettimeoutms",
    "maxpoolsize",
    "minpoolsize",
    "compressors",
    "loadbalanced",
];

fn redact_query(tail: &str) -> String {
    let Some(query_start) = tail.find('?') else {
        return tail.to_owned();
    };
    let (path, query) = tail.split_at(query_start + 1);
    let (query, fragment) = match query.find('#') {
        Some(index) => query.split_at(index),
        None => (query, ""),
    };
    let parameters: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if !is_harmless(name) => format!("{name}=***"),
            _ => pair.to_owned(),
        })
        .collect();
    format!("{path}{}{fragment}", parameters.join("&"))
}

fn is_harmless(name: &str) -> bool {
    HARMLESS_PARAMETERS.contains(&name.to_ascii_lowercase().as_str())
}

/// reqwest's error with its causes (a refused address and the setting that
/// allows it, a DNS failure), without the URL: a download's URL or a proxy's
/// `api_url` may carry credentials, and the messages stay short.
pub fn http_error_chain(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn hides_passwords_and_credential_parameters() {
        let cases = [
            (
                "mongodb://root:s3cret@database:27017/sales_analytics?authSource=admin",
                "mongodb://root:***@database:27017/sales_analytics?authSource=admin",
            ),
            (
                "mongodb://a:p%40ss@h1:1,h2:2/?replicaSet=rs",
                "mongodb://a:***@h1:1,h2:2/?replicaSet=rs",
            ),
            (
                "mongodb+srv://user@cluster.example.net",
                "mongodb+srv://user@cluster.example.net",
            ),
            ("mongodb://127.0.0.1:27017", "mongodb://127.0.0.1:27017"),
            (
                "https://x.test/a.csv?token=abc&gid=1#x",
                "https://x.test/a.csv?token=***&gid=1#x",
            ),
            ("https://x.test/a.csv?api_key=abc", "https://x.test/a.csv?api_key=***"),
            (
                "https://acct.blob.example.net/a.csv?sv=2022&sig=abc%2Bdef&se=2030",
                "https://acct.blob.example.net/a.csv?sv=***&sig=***&se=***",
            ),
            (
                "https://docs.google.com/spreadsheets/d/ID/export?format=csv&gid=7",
                "https://docs.google.com/spreadsheets/d/ID/export?format=csv&gid=7",
            ),
        ];
        for (url, expected) in cases {
            assert_eq!(redact_url(url), expected);
            assert!(!redact_url(url).contains("s3cret"));
        }
    }
}
