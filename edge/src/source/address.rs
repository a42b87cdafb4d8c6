//! An IP camera's address (`http://`, `https://`, `rtsp://`): the user name may be in it, the password never is
//! (it would show in `ps` and in shell history); it comes from `--source-password-file` or
//! `LOOKOUT_SOURCE_PASSWORD`, and no message ever prints it.

use crate::error::EdgeError;

/// A parsed camera address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CameraAddress {
    /// `http`, `https` or `rtsp`.
    pub scheme: String,
    /// The user name, when the address has one (`rtsp://admin@cam/…`).
    pub user: Option<String>,
    /// `host[:port]`.
    pub host: String,
    /// What follows the host, without its leading `/`.
    pub path: String,
}

impl CameraAddress {
    /// Parses `url`; refuses a password in it, a password without a user name to go with it (`password`:
    /// whether one was given), and an address without a host.
    pub fn parse(url: &str, password: bool) -> Result<CameraAddress, EdgeError> {
        let bad = |reason: &str| EdgeError::SourceOpen {
            source_spec: shown(url),
            reason: reason.into(),
        };
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| bad("not an address such as rtsp://host/path or http://host/path"))?;
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (user, host) = match authority.rsplit_once('@') {
            Some((user, host)) => (Some(user), host),
            None => (None, authority),
        };
        if user.is_some_and(|u| u.contains(':')) {
            return Err(bad(
                "a password in the address would show in `ps` and shell history; give it with \
                 --source-password-file FILE or the LOOKOUT_SOURCE_PASSWORD environment variable",
            ));
        }
        if host.is_empty() {
            return Err(bad("the address names no host"));
        }
        if password && user.is_none() {
            return Err(bad(&format!(
                "a password needs a user name in the address: {scheme}://USER@host/…"
            )));
        }
        Ok(CameraAddress {
            scheme: scheme.to_string(),
            user: user.map(str::to_string),
            host: host.to_string(),
            path: path.to_string(),
        })
    }

    /// The address without the user name: what messages show.
    pub fn shown(&self) -> String {
        format!("{}://{}/{}", self.scheme, self.host, self.path)
    }
}

/// `url` without its user name, for messages about an address that did not parse.
pub fn shown(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            format!("{scheme}://{host}/{path}")
        }
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_keep_the_user_and_refuse_a_password_in_them() {
        let a = CameraAddress::parse("rtsp://admin@cam.local:554/stream1", true).expect("parses");
        assert_eq!(a.user.as_deref(), Some("admin"));
        assert_eq!(a.host, "cam.local:554");
        assert_eq!(a.shown(), "rtsp://cam.local:554/stream1");
        for (url, password, want) in [
            ("rtsp://admin:secret@cam/s", false, "would show in `ps`"),
            ("rtsp:///s", false, "names no host"),
            ("rtsp://cam/s", true, "needs a user name"),
            ("cam/s", false, "not an address"),
        ] {
            let e = CameraAddress::parse(url, password)
                .expect_err(url)
                .to_string();
            assert!(e.contains(want) && !e.contains("secret"), "{url}: {e}");
        }
    }
}
