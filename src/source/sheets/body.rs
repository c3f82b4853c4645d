//! Reading Google's answers within a cap, and naming why a request failed:
//! shared by the API calls and the token requests.

/// The body, up to `limit` bytes, and whether there was more.
pub(super) async fn read_capped(
    mut response: reqwest::Response,
    limit: u64,
) -> Result<(Vec<u8>, bool), reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = usize::try_from(limit.saturating_sub(body.len() as u64)).unwrap_or(usize::MAX);
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            return Ok((body, true));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, false))
}

/// A failed request in words, without any URL credentials.
pub(super) fn transport_reason(error: reqwest::Error) -> String {
    if error.is_timeout() {
        "no answer within the request timeout".to_owned()
    } else {
        format!("network error: {}", crate::redact::http_error_chain(error))
    }
}
