//! Waiting out the appliance's "not now": a signed request answered 429 (this host is
//! over its share) or 503 (the appliance is busy, or just restarted) with `Retry-After`
//! is signed again and resent after that many seconds. Bounded in count ([`RETRIES`])
//! and in each wait ([`MAX_WAIT`]); an answer without `Retry-After`, or with a longer
//! one, is returned as it is, and the check-in loop's own backoff takes over.
//!
//! Each attempt is built afresh by the caller's closure, so every resend carries a new
//! `Patchward-Date` and signature: the appliance may have remembered the refused one.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::blocking::{RequestBuilder, Response};

/// Resends after the first answer, at most.
pub const RETRIES: u32 = 3;
/// The longest `Retry-After` the agent waits out in place.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

/// The wait a refusal asks for, if it is one the agent waits out: 429 or 503 with a
/// `Retry-After` in seconds (the appliance never sends the date form), at most
/// [`MAX_WAIT`].
pub fn wait_asked(resp: &Response) -> Option<Duration> {
    if !matches!(
        resp.status(),
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
    ) {
        return None;
    }
    let secs: u64 = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let wait = Duration::from_secs(secs);
    (wait <= MAX_WAIT).then_some(wait)
}

/// Sends `make()`, waiting (with `sleep`) and resending as the appliance asks, at most
/// [`RETRIES`] times. Returns the last answer, or the first transport error.
pub fn send(
    mut make: impl FnMut() -> RequestBuilder,
    sleep: &mut dyn FnMut(Duration),
) -> reqwest::Result<Response> {
    let mut resp = make().send()?;
    for _ in 0..RETRIES {
        let Some(wait) = wait_asked(&resp) else {
            return Ok(resp);
        };
        // Read and drop the refusal before sleeping, so the connection can be reused.
        drop(resp.bytes());
        sleep(wait);
        resp = make().send()?;
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;

    /// A one-thread HTTP/1.1 server on loopback that answers each request with the next
    /// of `answers` (status, extra header line), closing the connection every time, and
    /// returns the `x-attempt` header of every request it got.
    fn serve(answers: Vec<(u16, &'static str)>) -> (String, std::thread::JoinHandle<Vec<String>>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/x", l.local_addr().unwrap());
        let h = std::thread::spawn(move || {
            let mut seen = Vec::new();
            for (status, extra) in answers {
                let (s, _) = l.accept().unwrap();
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut line = String::new();
                loop {
                    line.clear();
                    if r.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("x-attempt:") {
                        seen.push(v.trim().to_string());
                    }
                }
                let body = "{}";
                let mut s = s;
                write!(
                    s,
                    "HTTP/1.1 {status} X\r\n{extra}content-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                )
                .unwrap();
            }
            seen
        });
        (url, h)
    }

    #[test]
    fn waits_as_asked_then_resends_signed_afresh() {
        let (url, server) = serve(vec![
            (429, "retry-after: 7\r\n"),
            (503, "retry-after: 2\r\n"),
            (200, ""),
        ]);
        let client = super::super::client();
        let mut attempt = 0;
        let mut slept = Vec::new();
        let resp = send(
            || {
                attempt += 1;
                client.get(&url).header("x-attempt", attempt.to_string())
            },
            &mut |d| slept.push(d),
        )
        .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(slept, [Duration::from_secs(7), Duration::from_secs(2)]);
        // Every attempt was built anew (a fresh date and signature in real use).
        assert_eq!(server.join().unwrap(), ["1", "2", "3"]);
    }

    #[test]
    fn gives_up_after_the_bound_and_ignores_what_it_should_not_wait_for() {
        let answers = vec![(429, "retry-after: 1\r\n"); 1 + RETRIES as usize];
        let (url, server) = serve(answers);
        let client = super::super::client();
        let mut slept = Vec::new();
        let resp = send(|| client.get(&url), &mut |d| slept.push(d)).unwrap();
        assert_eq!(resp.status(), 429);
        assert_eq!(slept.len(), RETRIES as usize);
        server.join().unwrap();
        // No Retry-After, too long a wait, or another status: answered at once.
        for (status, extra) in [
            (429, ""),
            (503, "retry-after: 3600\r\n"),
            (401, "retry-after: 1\r\n"),
        ] {
            let (url, server) = serve(vec![(status, extra)]);
            let mut slept = Vec::new();
            let resp = send(|| client.get(&url), &mut |d| slept.push(d)).unwrap();
            assert_eq!(resp.status().as_u16(), status);
            assert!(slept.is_empty(), "{status} {extra:?}");
            server.join().unwrap();
        }
    }
}
