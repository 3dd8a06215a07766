//! Versions of the list: chunks, manifests and the pointer. Reading one back whole and
//! checked; publishing one (chunks first, then the manifest and the pointer in one
//! compare-and-swap); removing the generations no longer kept.

use std::collections::BTreeSet;

use etcd_client::{Compare, CompareOp, DeleteOptions, GetOptions, Txn, TxnOp};
use serde::{Deserialize, Serialize};
use time::{format_description::well_known::Rfc3339, OffsetDateTime};

use super::{Base, Current, Fetched, Fleet, FleetError, Problem, Published};
use crate::orders::file::digest;

/// The largest chunk: etcd refuses requests over 1.5 MiB by default (its
/// `--max-request-bytes`), and a chunk is written in one request with its key.
pub const CHUNK_BYTES: usize = 1 << 20;
/// Operations in one transaction when deleting in bulk: etcd allows 128 by default
/// (`--max-txn-ops`).
const TXN_OPS: usize = 100;

/// The manifest of one version, at `P/list/versions/<N>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u64,
    /// SHA-256 of the whole list, in hex.
    pub sha256: String,
    /// The list's size in bytes.
    pub size: u64,
    /// The chunks' SHA-256 digests, in order: their contents concatenated are the list.
    pub chunks: Vec<String>,
    /// RFC 3339, UTC.
    pub published_at: String,
    /// `user@host` of whoever published it.
    pub published_by: String,
    /// The version that was current when it was published (`None`: the first).
    pub base: Option<u64>,
}

/// The pointer at `P/list/current`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pointer {
    pub version: u64,
    pub sha256: String,
}

/// The list cut into chunks of at most [`CHUNK_BYTES`], in order.
pub fn split_chunks(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    bytes.chunks(CHUNK_BYTES)
}

/// The digests of the list's chunks, in order: what a manifest lists.
pub fn chunk_digests(bytes: &[u8]) -> Vec<String> {
    split_chunks(bytes).map(digest).collect()
}

fn is_digest(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn bad(key: &str, problem: Problem) -> FleetError {
    FleetError::Bad {
        key: key.to_string(),
        problem,
    }
}

impl Pointer {
    /// Parses the pointer stored at `key`.
    pub fn parse(key: &str, value: &[u8]) -> Result<Self, FleetError> {
        let p: Pointer = serde_json::from_slice(value).map_err(|source| {
            bad(
                key,
                Problem::NotJson {
                    what: "pointer (JSON {\"version\": N, \"sha256\": \"...\"})",
                    source,
                },
            )
        })?;
        if !is_digest(&p.sha256) {
            return Err(bad(
                key,
                Problem::NotDigest {
                    value: p.sha256.clone(),
                },
            ));
        }
        Ok(p)
    }
}

impl Manifest {
    /// Parses the manifest stored at `key`, which should be version `version`.
    pub fn parse(key: &str, version: u64, value: &[u8]) -> Result<Self, FleetError> {
        let m: Manifest = serde_json::from_slice(value).map_err(|source| {
            bad(
                key,
                Problem::NotJson {
                    what: "manifest (JSON)",
                    source,
                },
            )
        })?;
        if m.version != version {
            return Err(bad(
                key,
                Problem::OtherVersion {
                    named: m.version,
                    expected: version,
                    by: "its key".to_string(),
                },
            ));
        }
        if let Some(d) = std::iter::once(&m.sha256)
            .chain(&m.chunks)
            .find(|d| !is_digest(d))
        {
            return Err(bad(key, Problem::NotDigest { value: d.clone() }));
        }
        let most = (m.chunks.len() as u64).saturating_mul(CHUNK_BYTES as u64);
        if m.size > most || (m.size == 0) != m.chunks.is_empty() {
            return Err(bad(
                key,
                Problem::ImpossibleSize {
                    chunks: m.chunks.len(),
                    size: m.size,
                },
            ));
        }
        Ok(m)
    }

    /// The manifest of `bytes` as version `version`.
    pub fn of(bytes: &[u8], version: u64, base: Option<u64>) -> Self {
        Self {
            version,
            sha256: digest(bytes),
            size: bytes.len() as u64,
            chunks: chunk_digests(bytes),
            published_at: OffsetDateTime::now_utc()
                .format(&Rfc3339)
                .unwrap_or_default(),
            published_by: who(),
            base,
        }
    }
}

/// `user@host` for the manifest: the user behind sudo when there is one.
fn who() -> String {
    let user = std::env::var("SUDO_USER")
        .ok()
        .filter(|u| !u.is_empty())
        .or_else(user_name)
        .unwrap_or_else(|| {
            // SAFETY: getuid has no preconditions.
            format!("uid{}", unsafe { libc::getuid() })
        });
    let host = super::hostname().unwrap_or_else(|| "unknown-host".to_string());
    format!("{user}@{host}")
}

/// The name of the user this process runs as, from the password database.
fn user_name() -> Option<String> {
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 4096];
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the sizes given; on success `result` points to
    // `pwd`, whose strings live in `buf`.
    let rc = unsafe {
        libc::getpwuid_r(
            libc::getuid(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() {
        return None;
    }
    // SAFETY: pw_name is a NUL-terminated string inside `buf`.
    let name = unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) };
    Some(name.to_string_lossy().into_owned()).filter(|n| !n.is_empty())
}

impl Fleet {
    /// The pointer's value and mod_revision (`None`: absent), unparsed.
    async fn pointer_raw(&mut self) -> Result<Option<(Vec<u8>, i64)>, FleetError> {
        let key = self.keys.current();
        let mut kv = self.client().await?.kv_client();
        let mut resp = self.call("read", &key, kv.get(key.clone(), None)).await?;
        Ok(resp
            .take_kvs()
            .into_iter()
            .next()
            .map(|kv| (kv.value().to_vec(), kv.mod_revision())))
    }

    /// The current pointer and the etcd revision it was written at (`None`: nothing
    /// published).
    pub async fn current(&mut self) -> Result<Option<Current>, FleetError> {
        let key = self.keys.current();
        let Some((value, mod_revision)) = self.pointer_raw().await? else {
            return Ok(None);
        };
        let p = Pointer::parse(&key, &value)?;
        Ok(Some(Current {
            version: p.version,
            sha256: p.sha256,
            mod_revision,
        }))
    }

    /// The manifest of version `version`; `referenced_by` says why it should exist.
    pub async fn manifest(
        &mut self,
        version: u64,
        referenced_by: &str,
    ) -> Result<Manifest, FleetError> {
        let key = self.keys.version(version);
        let mut kv = self.client().await?.kv_client();
        let mut resp = self.call("read", &key, kv.get(key.clone(), None)).await?;
        let Some(found) = resp.take_kvs().into_iter().next() else {
            return Err(bad(
                &key,
                Problem::Missing {
                    referenced_by: referenced_by.to_string(),
                },
            ));
        };
        Manifest::parse(&key, version, found.value())
    }

    /// The list of version `version`, its chunks fetched and checked against the
    /// manifest's digests.
    pub async fn fetch(&mut self, version: u64) -> Result<Fetched, FleetError> {
        self.fetch_referenced(version, &format!("version {version} was asked for"))
            .await
    }

    /// The current version's list (`None`: nothing published), checked against the
    /// pointer too.
    pub async fn fetch_current(&mut self) -> Result<Option<(Current, Fetched)>, FleetError> {
        let Some(current) = self.current().await? else {
            return Ok(None);
        };
        let pointer = self.keys.current();
        let fetched = self
            .fetch_referenced(
                current.version,
                &format!("{pointer} names version {}", current.version),
            )
            .await?;
        if fetched.sha256 != current.sha256 {
            return Err(bad(
                &pointer,
                Problem::OtherDigest {
                    found: current.sha256,
                    expected: fetched.sha256,
                    by: self.keys.version(fetched.version),
                },
            ));
        }
        Ok(Some((current, fetched)))
    }

    async fn fetch_referenced(
        &mut self,
        version: u64,
        referenced_by: &str,
    ) -> Result<Fetched, FleetError> {
        let manifest = self.manifest(version, referenced_by).await?;
        let manifest_key = self.keys.version(version);
        let mut bytes = Vec::with_capacity(manifest.size.min(1 << 30) as usize);
        let mut kv = self.client().await?.kv_client();
        for d in &manifest.chunks {
            let key = self.keys.chunk(d);
            let mut resp = self.call("read", &key, kv.get(key.clone(), None)).await?;
            let Some(chunk) = resp.take_kvs().into_iter().next() else {
                return Err(bad(
                    &key,
                    Problem::Missing {
                        referenced_by: format!("{manifest_key} lists it"),
                    },
                ));
            };
            let found = digest(chunk.value());
            if &found != d || chunk.value().is_empty() || chunk.value().len() > CHUNK_BYTES {
                return Err(bad(
                    &key,
                    Problem::Digest {
                        what: "the chunk",
                        expected: d.clone(),
                        found,
                        expected_by: "its key".to_string(),
                    },
                ));
            }
            bytes.extend_from_slice(chunk.value());
        }
        if bytes.len() as u64 != manifest.size {
            return Err(bad(
                &manifest_key,
                Problem::Size {
                    expected: manifest.size,
                    found: bytes.len() as u64,
                },
            ));
        }
        let sha256 = digest(&bytes);
        if sha256 != manifest.sha256 {
            return Err(bad(
                &manifest_key,
                Problem::Digest {
                    what: "the list its chunks make",
                    expected: manifest.sha256,
                    found: sha256,
                    expected_by: "the manifest".to_string(),
                },
            ));
        }
        Ok(Fetched {
            version,
            sha256,
            bytes,
            published_at: manifest.published_at,
            published_by: manifest.published_by,
            base: manifest.base,
        })
    }

    /// Publishes `bytes` (validated by the caller) if the current version is still
    /// `base`; returns the new version.
    pub async fn publish(
        &mut self,
        bytes: &[u8],
        base: Base,
        keep: usize,
    ) -> Result<u64, FleetError> {
        Ok(self.publish_report(bytes, base, keep).await?.version)
    }

    /// [`Fleet::publish`], saying what it did.
    pub async fn publish_report(
        &mut self,
        bytes: &[u8],
        base: Base,
        keep: usize,
    ) -> Result<Published, FleetError> {
        let pointer_key = self.keys.current();
        // 1. What is current: the compare-and-swap below compares the pointer's
        //    mod_revision with this one (0: absent).
        let (current, revision) = match self.pointer_raw().await? {
            None => (None, 0),
            Some((value, revision)) => match Pointer::parse(&pointer_key, &value) {
                Ok(p) => (Some(p.version), revision),
                // A broken pointer can be replaced, but only knowingly.
                Err(e) if base != Base::Any => return Err(e),
                Err(_) => (None, revision),
            },
        };
        match (base, current) {
            (Base::Any, _) | (Base::Empty, None) => {}
            (Base::Version(b), Some(c)) if b == c => {}
            _ => return Err(FleetError::Stale { base, current }),
        }
        // 2. A version number never used: above the current one and any manifest left
        //    (a pointer deleted by hand does not make version numbers start again).
        let highest = self.versions().await?.last().copied();
        let version = current.max(highest).unwrap_or(0) + 1;
        // 3. The chunks: content-addressed, so writing one that exists changes nothing
        //    but its mod_revision, which tells a concurrent cleanup to leave it alone.
        let manifest = Manifest::of(bytes, version, current);
        let mut kv = self.client().await?.kv_client();
        for chunk in split_chunks(bytes) {
            let key = self.keys.chunk(&digest(chunk));
            self.call("write", &key, kv.put(key.clone(), chunk, None))
                .await?;
        }
        // 4. The manifest and the pointer in one compare-and-swap: created only if the
        //    pointer has not moved since step 1 and version N does not exist.
        let manifest_key = self.keys.version(version);
        let pointer = Pointer {
            version,
            sha256: manifest.sha256.clone(),
        };
        let txn = Txn::new()
            .when([
                Compare::mod_revision(pointer_key.clone(), CompareOp::Equal, revision),
                Compare::create_revision(manifest_key.clone(), CompareOp::Equal, 0),
            ])
            .and_then([
                TxnOp::put(manifest_key.clone(), to_json(&manifest), None),
                TxnOp::put(pointer_key.clone(), to_json(&pointer), None),
            ]);
        let resp = self
            .call("make version current at", &pointer_key, kv.txn(txn))
            .await?;
        if !resp.succeeded() {
            let now = match self.pointer_raw().await? {
                Some((v, _)) => Pointer::parse(&pointer_key, &v).ok().map(|p| p.version),
                None => None,
            };
            if now == current {
                return Err(bad(
                    &manifest_key,
                    Problem::NotPublished {
                        pointer: pointer_key,
                        current,
                    },
                ));
            }
            return Err(FleetError::Stale { base, current: now });
        }
        let made_current_at = resp.header().map_or(0, |h| h.revision());
        let mut published = Published {
            version,
            sha256: manifest.sha256,
            size: manifest.size,
            chunks: manifest.chunks.len(),
            base: current,
            removed_versions: Vec::new(),
            removed_chunks: 0,
            cleanup_problem: None,
        };
        // 5. Old generations: the list is current whatever happens here.
        if let Err(e) = self
            .remove_old(keep.max(1), made_current_at, &mut published)
            .await
        {
            log::warn!("publish: removing old versions: {e}");
            published.cleanup_problem = Some(crate::error_chain(&e));
        }
        Ok(published)
    }

    /// The keys under `prefix`, without their values.
    async fn keys_under(&mut self, prefix: &str) -> Result<etcd_client::GetResponse, FleetError> {
        let mut kv = self.client().await?.kv_client();
        self.call(
            "list",
            prefix,
            kv.get(
                prefix.to_string(),
                Some(GetOptions::new().with_prefix().with_keys_only()),
            ),
        )
        .await
    }

    /// Every version that has a manifest, ascending.
    pub async fn versions(&mut self) -> Result<Vec<u64>, FleetError> {
        let prefix = self.keys.versions();
        let resp = self.keys_under(&prefix).await?;
        let mut versions: Vec<u64> = resp
            .kvs()
            .iter()
            .filter_map(|kv| std::str::from_utf8(kv.key()).ok())
            .filter_map(|k| self.keys.version_of(k))
            .collect();
        versions.sort_unstable();
        Ok(versions)
    }

    /// Deletes the manifests beyond the `keep` newest, then the chunks no kept manifest
    /// lists. A chunk written since the pointer moved at `made_current_at` may belong to a
    /// publish under way and stays; a chunk is deleted only if it was not written again
    /// since it was listed.
    async fn remove_old(
        &mut self,
        keep: usize,
        made_current_at: i64,
        published: &mut Published,
    ) -> Result<(), FleetError> {
        let versions = self.versions().await?;
        let cut = versions.len().saturating_sub(keep);
        let (old, kept) = versions.split_at(cut);
        let mut kv = self.client().await?.kv_client();
        for batch in old.chunks(TXN_OPS) {
            let ops: Vec<TxnOp> = batch
                .iter()
                .map(|v| TxnOp::delete(self.keys.version(*v), None))
                .collect();
            let first = self.keys.version(batch[0]);
            self.call("delete", &first, kv.txn(Txn::new().and_then(ops)))
                .await?;
            published.removed_versions.extend_from_slice(batch);
        }
        // Every chunk a kept manifest lists; a manifest that cannot be read stops the
        // cleanup of chunks (its chunks are not known).
        let mut referenced = BTreeSet::new();
        for v in kept {
            let m = self.manifest(*v, "it was listed a moment ago").await?;
            referenced.extend(m.chunks);
        }
        let prefix = self.keys.chunks();
        let resp = self.keys_under(&prefix).await?;
        for chunk in resp.kvs() {
            let Ok(key) = std::str::from_utf8(chunk.key()) else {
                continue;
            };
            let name = key.strip_prefix(&prefix).unwrap_or(key);
            if referenced.contains(name) || chunk.mod_revision() >= made_current_at {
                continue;
            }
            let txn = Txn::new()
                .when([Compare::mod_revision(
                    key,
                    CompareOp::Equal,
                    chunk.mod_revision(),
                )])
                .and_then([TxnOp::delete(key, None::<DeleteOptions>)]);
            if self.call("delete", key, kv.txn(txn)).await?.succeeded() {
                published.removed_chunks += 1;
            }
        }
        Ok(())
    }
}

fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("plain structs serialize")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_at_most_one_mib_and_concatenate_to_the_list() {
        for len in [
            0,
            1,
            CHUNK_BYTES - 1,
            CHUNK_BYTES,
            CHUNK_BYTES + 1,
            3 * CHUNK_BYTES + 7,
        ] {
            let bytes: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let chunks: Vec<&[u8]> = split_chunks(&bytes).collect();
            assert_eq!(chunks.len(), len.div_ceil(CHUNK_BYTES), "len {len}");
            assert!(chunks
                .iter()
                .all(|c| !c.is_empty() && c.len() <= CHUNK_BYTES));
            assert_eq!(chunks.concat(), bytes);
            let m = Manifest::of(&bytes, 3, Some(2));
            assert_eq!(
                m.chunks,
                chunks.iter().map(|c| digest(c)).collect::<Vec<_>>()
            );
            assert_eq!(m.size, len as u64);
            assert_eq!(m.sha256, digest(&bytes));
        }
    }

    #[test]
    fn a_manifest_reads_back_as_written() {
        let m = Manifest::of(b"{\"version\": 1}", 7, None);
        let json = serde_json::to_vec(&m).unwrap();
        assert_eq!(Manifest::parse("/p/list/versions/7", 7, &json).unwrap(), m);
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(v["base"], serde_json::Value::Null);
        assert!(v["published_at"].as_str().unwrap().ends_with('Z'));
        assert!(v["published_by"].as_str().unwrap().contains('@'));
    }

    #[track_caller]
    fn refused(key: &str, version: u64, value: &str, expect: &str) {
        match Manifest::parse(key, version, value.as_bytes()) {
            Ok(m) => panic!("{value} was accepted as {m:?}"),
            Err(e) => {
                let text = crate::error_chain(&e);
                assert!(
                    text.starts_with(key) && text.contains(expect),
                    "expected an error naming {key} and saying {expect:?}, got {text:?}"
                );
            }
        }
    }

    #[test]
    fn bad_manifests_are_refused_naming_the_key() {
        let k = "/p/list/versions/2";
        let d = "a".repeat(64);
        refused(k, 2, "not json", "not a valid manifest");
        refused(k, 2, "{\"version\": 2}", "missing field");
        let good = |version: u64, sha: &str, size: u64, chunks: &str| {
            format!(
                r#"{{"version": {version}, "sha256": "{sha}", "size": {size}, "chunks": [{chunks}],
                   "published_at": "2026-11-29T00:00:00Z", "published_by": "a@b", "base": null}}"#
            )
        };
        let one = format!("\"{d}\"");
        assert!(Manifest::parse(k, 2, good(2, &d, 10, &one).as_bytes()).is_ok());
        refused(k, 2, &good(3, &d, 10, &one), "names version 3");
        refused(k, 2, &good(2, "ABC", 10, &one), "not a SHA-256 digest");
        refused(k, 2, &good(2, &d, 10, "\"xyz\""), "not a SHA-256 digest");
        refused(
            k,
            2,
            &good(2, &d, CHUNK_BYTES as u64 + 1, &one),
            "cannot make",
        );
        refused(k, 2, &good(2, &d, 10, ""), "cannot make");
    }

    #[test]
    fn bad_pointers_are_refused_naming_the_key() {
        let k = "/p/list/current";
        let d = "0".repeat(64);
        let p = Pointer::parse(
            k,
            format!("{{\"version\": 4, \"sha256\": \"{d}\"}}").as_bytes(),
        )
        .unwrap();
        assert_eq!(p.version, 4);
        for (value, expect) in [
            ("7", "not a valid pointer"),
            ("{\"version\": \"x\"}", "not a valid pointer"),
            (
                "{\"version\": 1, \"sha256\": \"short\"}",
                "not a SHA-256 digest",
            ),
        ] {
            let e = Pointer::parse(k, value.as_bytes()).unwrap_err();
            let text = crate::error_chain(&e);
            assert!(
                text.starts_with(k) && text.contains(expect),
                "{value}: {text}"
            );
        }
    }
}
