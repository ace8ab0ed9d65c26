//! Every header name tollgate reads or writes.

use http::header::HeaderName;

pub const X_CONSUMER_USERNAME: HeaderName = HeaderName::from_static("x-consumer-username");
pub const X_CREDENTIAL_IDENTIFIER: HeaderName = HeaderName::from_static("x-credential-identifier");
pub const X_CONSUMER_CUSTOM_ID: HeaderName = HeaderName::from_static("x-consumer-custom-id");
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
pub const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
pub const WWW_AUTHENTICATE: HeaderName = HeaderName::from_static("www-authenticate");
pub const DATE: HeaderName = HeaderName::from_static("date");
pub const DIGEST: HeaderName = HeaderName::from_static("digest");

/// The identity headers set by authentication and removed from every client request.
pub const IDENTITY: [HeaderName; 3] = [
    X_CONSUMER_USERNAME,
    X_CREDENTIAL_IDENTIFIER,
    X_CONSUMER_CUSTOM_ID,
];

/// `name` in its dash spelling (`x_consumer_username` → `x-consumer-username`), the form the
/// strip list holds.
pub fn dash_spelling(name: &HeaderName) -> HeaderName {
    if !name.as_str().contains('_') {
        return name.clone();
    }
    HeaderName::from_bytes(name.as_str().replace('_', "-").as_bytes()).unwrap_or(name.clone())
}

/// Removes every header whose name, in any case and with `_` read as `-`, is in `strip` (held in
/// dash spelling): many upstream stacks (CGI, WSGI, PHP) treat `X_Consumer_Username` and
/// `X-Consumer-Username` alike, so a client must not be able to send either.
pub fn remove_all_spellings(req: &mut pingora_http::RequestHeader, strip: &[HeaderName]) {
    for name in strip {
        req.remove_header(name);
    }
    // Rare: only a request with `_` in a header name pays for the second pass.
    if !req.headers.keys().any(|k| k.as_str().contains('_')) {
        return;
    }
    let forged: Vec<HeaderName> = req
        .headers
        .keys()
        .filter(|k| k.as_str().contains('_') && strip.contains(&dash_spelling(k)))
        .cloned()
        .collect();
    for name in &forged {
        req.remove_header(name);
    }
}
