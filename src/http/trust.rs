//! Whether the API's TLS certificate is trusted, asked before a run writes
//! anything: an untrusted certificate refuses the run (exit 3) with the
//! reason, instead of failing its first slice after the scrap was created.

use url::Url;

/// Why the certificate of `url`'s server is not trusted, if it is not:
/// one `HEAD` of the URL (no credentials sent), its answer ignored. Any
/// other failure (no answer, a refused connection) is left to the run.
pub fn refused(agent: &ureq::Agent, url: &Url) -> Option<String> {
    if url.scheme() != "https" {
        return None;
    }
    let e = agent.head(url.as_str()).call().err()?;
    super::agent::certificate_error(&e).map(|c| {
        format!(
            "TLS: the API's certificate is not trusted ({c}): add its CA to the \
             system's certificate store or give the client a ca_file"
        )
    })
}
