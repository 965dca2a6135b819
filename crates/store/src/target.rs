//! Which store a URL names. Kept apart from the backends so that a URL of a kind this build was
//! compiled without still gets a precise error (naming the missing feature), and so that no
//! message ever carries a password: every URL shown goes through [`redact`].

use crate::StoreError;
#[cfg(feature = "sqlite")]
use crate::sqlite::Synchronous;

/// A parsed store URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// `memory`.
    Memory,
    /// `sqlite:PATH` or `sqlite://PATH`, with `?sync=normal|full`.
    #[cfg(feature = "sqlite")]
    Sqlite {
        /// The file.
        path: std::path::PathBuf,
        /// Its `synchronous` setting.
        sync: Synchronous,
    },
    /// `postgres://…` or `postgresql://…`, as given (libpq's URL form).
    #[cfg(feature = "postgres")]
    Postgres {
        /// The URL.
        url: String,
    },
}

/// Reads a store URL.
pub(crate) fn parse(url: &str) -> Result<Target, StoreError> {
    let bad = |hint: &str| StoreError::BadUrl {
        url: redact(url),
        hint: hint.to_owned(),
    };
    if url == "memory" || url == "memory:" {
        return Ok(Target::Memory);
    }
    if let Some(rest) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    {
        #[cfg(feature = "sqlite")]
        {
            return sqlite_target(rest).map_err(|hint| bad(&hint));
        }
        #[cfg(not(feature = "sqlite"))]
        {
            let _ = rest;
            return Err(bad(
                " (this braid was built without the `sqlite` feature: rebuild with `--features sqlite`)",
            ));
        }
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        #[cfg(feature = "postgres")]
        {
            return Ok(Target::Postgres {
                url: url.to_owned(),
            });
        }
        #[cfg(not(feature = "postgres"))]
        {
            return Err(bad(
                " (this braid was built without the `postgres` feature: rebuild with `--features postgres`)",
            ));
        }
    }
    Err(bad(""))
}

/// The path and options of a `sqlite:` URL, or the hint of why not.
#[cfg(feature = "sqlite")]
fn sqlite_target(rest: &str) -> Result<Target, String> {
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path.is_empty() {
        return Err(" (the SQLite URL names no file: `sqlite:runs.db`)".to_owned());
    }
    let mut sync = Synchronous::Normal;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair {
            "sync=normal" => sync = Synchronous::Normal,
            "sync=full" => sync = Synchronous::Full,
            other => {
                return Err(format!(
                    " (unknown SQLite option `{other}`: the one option is `sync=normal` or `sync=full`)"
                ));
            }
        }
    }
    Ok(Target::Sqlite {
        path: path.into(),
        sync,
    })
}

/// `url` without its password, wherever it is: in the authority (`user:secret@host`) or as a
/// `password=` parameter. What is left is safe to log and show.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{user}@{host}"),
            None => authority.to_owned(),
        },
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let kept: Vec<&str> = query
                .split('&')
                .filter(|p| !p.to_ascii_lowercase().starts_with("password="))
                .collect();
            if kept.is_empty() {
                path.to_owned()
            } else {
                format!("{path}?{}", kept.join("&"))
            }
        }
        None => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_drops_passwords() {
        assert_eq!(
            redact("postgres://u:s3cret@db:5432/x?sslmode=disable&password=p2"),
            "postgres://u@db:5432/x?sslmode=disable"
        );
        assert_eq!(redact("postgres://u@db/x"), "postgres://u@db/x");
        assert_eq!(redact("postgres://u:p@q@db/x"), "postgres://u@db/x");
        assert_eq!(redact("postgresql://db/x?password=a"), "postgresql://db/x");
    }

    #[test]
    fn urls_are_read() {
        assert_eq!(parse("memory"), Ok(Target::Memory));
        #[cfg(feature = "sqlite")]
        {
            assert_eq!(
                parse("sqlite:runs.db?sync=full"),
                Ok(Target::Sqlite {
                    path: "runs.db".into(),
                    sync: Synchronous::Full
                })
            );
            assert_eq!(
                parse("sqlite:///var/braid.db"),
                Ok(Target::Sqlite {
                    path: "/var/braid.db".into(),
                    sync: Synchronous::Normal
                })
            );
            assert!(matches!(
                parse("sqlite:x.db?sync=off"),
                Err(StoreError::BadUrl { .. })
            ));
            assert!(matches!(parse("sqlite:"), Err(StoreError::BadUrl { .. })));
        }
        match parse("mysql://u:pw@h/db") {
            Err(StoreError::BadUrl { url, .. }) => assert_eq!(url, "mysql://u@h/db"),
            other => panic!("{other:?}"),
        }
    }
}
