//! A parsed `multipart/form-data` request (spec http §2.3, §2.4): fields become the data tree,
//! file parts are checked against `uploads.forbid`/`allow` and stored as fresh 0600 temp
//! files in `uploads.dir`, described by the uploads tree. The files live exactly as long as
//! the [`StoredForm`]: the connection drops it after the last response byte, on every path.

use super::Uploads;
use crate::aio::{Backend, File};
use ringrunner_protocol::http::{group_by_name, multipart, DataTree, FormError};
use rustix::fs::{Mode, OFlags};
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};

/// PHP's `UPLOAD_ERR_*` codes rr reports.
mod upload_error {
    pub const OK: u8 = 0;
    pub const NO_TMP_DIR: u8 = 6;
    pub const CANT_WRITE: u8 = 7;
    pub const EXTENSION: u8 = 8;
}

/// Where and how uploads are stored, fixed when the plugin starts.
#[derive(Debug, Clone)]
pub struct UploadPolicy {
    /// `uploads.dir`.
    pub dir: PathBuf,
    /// `uploads.forbid`, verbatim.
    pub forbid: Vec<String>,
    /// `uploads.allow`, verbatim; empty allows all.
    pub allow: Vec<String>,
    /// The workers' uid/gid when both are non-zero: files are handed to them.
    pub owner: Option<(u32, u32)>,
}

impl UploadPolicy {
    /// The policy of `uploads`, files owned by `credentials` when both ids are non-zero.
    #[must_use]
    pub fn new(uploads: &Uploads, credentials: Option<(u32, u32)>) -> Self {
        let dir = if uploads.dir.as_os_str().is_empty() {
            std::env::temp_dir()
        } else {
            uploads.dir.clone()
        };
        Self {
            dir,
            forbid: uploads.forbid.clone(),
            allow: uploads.allow.clone(),
            owner: credentials.filter(|&(uid, gid)| uid != 0 && gid != 0),
        }
    }

    /// True when `filename`'s extension may be stored.
    fn accepts(&self, filename: &str) -> bool {
        let ext = extension(filename).to_ascii_lowercase();
        if self.forbid.contains(&ext) {
            return false;
        }
        self.allow.is_empty() || self.allow.contains(&ext)
    }
}

/// Go's `path.Ext`: from the last `.` of the last element, "" when there is none.
fn extension(name: &str) -> &str {
    let element = name.rsplit('/').next().unwrap_or(name);
    element.rfind('.').map_or("", |dot| &element[dot..])
}

/// The worker's view of a multipart request and the temp files behind it.
#[derive(Debug, Default)]
pub struct StoredForm {
    /// The data tree as JSON ("" for no fields).
    pub body: Vec<u8>,
    /// The uploads tree as JSON (`{}` for no files).
    pub uploads: Vec<u8>,
    files: TempFiles,
}

/// Parses a multipart body and stores its files, written on the shard's I/O `backend` in
/// chunks of at most [`WRITE_CHUNK_BYTES`] (on io_uring a large upload never stalls the
/// shard in a blocking write; a chunk is the most extra memory it costs).
///
/// # Errors
/// A malformed body or a tree conflict: the request is answered with the error's status
/// (400, or 500 for more fields than Go takes) and no file is left.
pub async fn store_multipart(
    body: &[u8],
    content_type: &[u8],
    policy: &UploadPolicy,
    backend: Backend,
) -> Result<StoredForm, FormRefusal> {
    let boundary =
        multipart::boundary(content_type).ok_or(multipart::MultipartError::NoBoundary)?;
    let parts = multipart::parse(body, boundary)?;
    let mut form = StoredForm::default();
    let mut chunk = Vec::new();
    let mut fields = Vec::new();
    let mut files = Vec::new();
    for part in parts {
        match &part.filename {
            None => fields.push((part.name, String::from_utf8_lossy(part.data).into_owned())),
            Some(filename) => {
                let described = store_file(
                    &part,
                    filename,
                    policy,
                    &mut form.files,
                    &mut chunk,
                    backend,
                )
                .await;
                files.push((part.name, described));
            }
        }
    }
    let mut tree = DataTree::default();
    for (name, values) in group_by_name(fields) {
        tree.push(&name, values)?;
    }
    tree.write_json(&mut form.body);
    let mut uploads = DataTree::default();
    for (name, described) in group_by_name(files) {
        uploads.push_files(&name, described)?;
    }
    uploads.write_json_object(&mut form.uploads);
    Ok(form)
}

/// Why a form body was refused: rr's status and its error text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormRefusal {
    /// 400 for a malformed body, 500 for one past Go's field limit.
    pub status: u16,
    /// The error text rr writes after `serve_http: `.
    pub text: String,
}

impl From<FormError> for FormRefusal {
    fn from(error: FormError) -> Self {
        Self {
            status: error.status(),
            text: error.to_string(),
        }
    }
}

impl From<multipart::MultipartError> for FormRefusal {
    fn from(error: multipart::MultipartError) -> Self {
        Self {
            status: 400,
            text: error.to_string(),
        }
    }
}

/// Bytes of an upload copied and written per ring write.
pub const WRITE_CHUNK_BYTES: usize = 1 << 20;

/// Stores one file part; the JSON object the worker gets for it.
async fn store_file(
    part: &multipart::Part<'_>,
    filename: &str,
    policy: &UploadPolicy,
    files: &mut TempFiles,
    chunk: &mut Vec<u8>,
    backend: Backend,
) -> serde_json::Value {
    let describe = |error: u8, size: usize, tmp_name: &str| {
        serde_json::json!({
            "name": filename, "mime": part.content_type, "size": size,
            "error": error, "tmpName": tmp_name,
        })
    };
    if !policy.accepts(filename) {
        tracing::debug!(target: "http", filename, "upload refused by uploads.forbid/allow");
        return describe(upload_error::EXTENSION, 0, "");
    }
    let (path, file) = match create_temp(&policy.dir) {
        Ok(created) => created,
        Err(error) => {
            tracing::error!(target: "http", dir = %policy.dir.display(), %error,
                "cannot create an upload file");
            return describe(upload_error::NO_TMP_DIR, 0, "");
        }
    };
    files.0.push(path.clone());
    let owned = match policy.owner {
        Some((uid, gid)) => rustix::fs::fchown(
            &file,
            Some(rustix::fs::Uid::from_raw(uid)),
            Some(rustix::fs::Gid::from_raw(gid)),
        )
        .map_err(std::io::Error::from),
        None => Ok(()),
    };
    let stored = match owned {
        Ok(()) => write_in_chunks(File::from_std(file, backend), part.data, chunk).await,
        Err(error) => Err(error),
    };
    match stored {
        Ok(()) => describe(upload_error::OK, part.data.len(), &path.to_string_lossy()),
        Err(error) => {
            tracing::error!(target: "http", path = %path.display(), %error,
                "cannot write an upload file");
            describe(upload_error::CANT_WRITE, 0, "")
        }
    }
}

/// Writes `data` to `file`, a chunk at a time through the reused `chunk`.
async fn write_in_chunks(file: File, data: &[u8], chunk: &mut Vec<u8>) -> std::io::Result<()> {
    let mut offset = 0;
    let mut result = Ok(());
    while offset < data.len() {
        let end = data.len().min(offset + WRITE_CHUNK_BYTES);
        let mut buffer = std::mem::take(chunk);
        buffer.clear();
        buffer.extend_from_slice(&data[offset..end]);
        let (written, buffer) = file.write_all_at(buffer, offset as u64).await;
        *chunk = buffer;
        if let Err(error) = written {
            result = Err(error);
            break;
        }
        offset = end;
    }
    let _ = file.close().await;
    result
}

/// A new file `dir/upload<digits>`, created exclusively with mode 0600.
fn create_temp(dir: &Path) -> std::io::Result<(PathBuf, std::fs::File)> {
    let random = std::collections::hash_map::RandomState::new();
    for attempt in 0u32..100 {
        let mut hasher = random.build_hasher();
        hasher.write_u32(attempt);
        let path = dir.join(format!("upload{}", hasher.finish() % 10_000_000_000));
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC;
        match rustix::fs::open(&path, flags, Mode::from_raw_mode(0o600)) {
            Ok(fd) => return Ok((path, std::fs::File::from(fd))),
            Err(rustix::io::Errno::EXIST) => {}
            Err(error) => return Err(error.into()),
        }
    }
    Err(std::io::Error::other(
        "no free upload file name after 100 tries",
    ))
}

/// Paths removed when dropped.
#[derive(Debug, Default)]
struct TempFiles(Vec<PathBuf>);

impl Drop for TempFiles {
    fn drop(&mut self) {
        for path in &self.0 {
            if let Err(error) = std::fs::remove_file(path) {
                // The worker may have moved it (move_uploaded_file): that is its right.
                if error.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(target: "http", path = %path.display(), %error,
                        "cannot remove an upload file");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn policy(dir: &Path) -> UploadPolicy {
        UploadPolicy {
            dir: dir.to_owned(),
            forbid: vec![".php".into()],
            allow: Vec::new(),
            owner: None,
        }
    }

    /// [`store_multipart`] on a ring of its own, and again on epoll (both must agree).
    fn store(
        body: &[u8],
        content_type: &[u8],
        policy: &UploadPolicy,
    ) -> Result<StoredForm, FormRefusal> {
        let on_epoll = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(store_multipart(body, content_type, policy, Backend::Epoll));
        let on_ring =
            tokio_uring::start(store_multipart(body, content_type, policy, Backend::Uring));
        assert_eq!(
            on_epoll.as_ref().map(|form| &form.body),
            on_ring.as_ref().map(|form| &form.body)
        );
        on_ring
    }

    #[test]
    fn a_file_larger_than_a_chunk_is_written_whole() {
        let dir = scratch_dir("big");
        let data: Vec<u8> = (0..WRITE_CHUNK_BYTES * 2 + 12_345)
            .map(|i| (i % 253) as u8)
            .collect();
        let mut body =
            b"--X\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a.bin\"\r\n\r\n"
                .to_vec();
        body.extend_from_slice(&data);
        body.extend_from_slice(b"\r\n--X--\r\n");
        let form = store(&body, b"multipart/form-data; boundary=X", &policy(&dir)).unwrap();
        let uploads: serde_json::Value = serde_json::from_slice(&form.uploads).unwrap();
        assert_eq!(uploads["f"]["size"], data.len());
        let tmp = uploads["f"]["tmpName"].as_str().unwrap().to_owned();
        assert!(
            std::fs::read(&tmp).unwrap() == data,
            "the file differs from the part"
        );
        drop(form);
        std::fs::remove_dir(&dir).unwrap();
    }

    fn scratch_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("rr-uploads-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    const BODY: &[u8] = b"--X\r\n\
        Content-Disposition: form-data; name=\"title\"\r\n\r\nHi\r\n\
        --X\r\nContent-Disposition: form-data; name=\"meta[tags][]\"\r\n\r\na\r\n\
        --X\r\nContent-Disposition: form-data; name=\"meta[tags][]\"\r\n\r\nb\r\n\
        --X\r\nContent-Disposition: form-data; name=\"doc\"; filename=\"r.PDF\"\r\n\
        Content-Type: application/pdf\r\n\r\n%PDF-1\r\n\
        --X\r\nContent-Disposition: form-data; name=\"doc2\"; filename=\"x.PHP\"\r\n\r\n<?php\r\n\
        --X--\r\n";

    #[test]
    fn fields_files_and_refusals_follow_rr() {
        let dir = scratch_dir("rr");
        let form = store(BODY, b"multipart/form-data; boundary=X", &policy(&dir)).unwrap();
        let body: serde_json::Value = serde_json::from_slice(&form.body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"title": "Hi", "meta": {"tags": ["a", "b"]}})
        );
        let uploads: serde_json::Value = serde_json::from_slice(&form.uploads).unwrap();
        let tmp = uploads["doc"]["tmpName"].as_str().unwrap().to_owned();
        assert!(tmp.starts_with(&*dir.join("upload").to_string_lossy()));
        assert_eq!(
            uploads,
            serde_json::json!({
                "doc": {"name": "r.PDF", "mime": "application/pdf", "size": 6, "error": 0,
                    "tmpName": tmp},
                "doc2": {"name": "x.PHP", "mime": "", "size": 0, "error": 8, "tmpName": ""},
            })
        );
        assert_eq!(std::fs::read(&tmp).unwrap(), b"%PDF-1");
        let mode = std::fs::metadata(&tmp).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        drop(form);
        assert!(
            !Path::new(&tmp).exists(),
            "the temp file outlived the request"
        );
        std::fs::remove_dir(&dir).unwrap();
    }

    #[test]
    fn a_missing_dir_reports_no_tmp_dir() {
        let missing = std::env::temp_dir().join("rr-uploads-missing/none");
        let form = store(BODY, b"multipart/form-data; boundary=X", &policy(&missing)).unwrap();
        let uploads: serde_json::Value = serde_json::from_slice(&form.uploads).unwrap();
        assert_eq!(uploads["doc"]["error"], 6);
        assert_eq!(uploads["doc"]["tmpName"], "");
    }

    #[test]
    fn allow_lists_and_extensions() {
        let mut policy = policy(Path::new("/nonexistent"));
        policy.allow = vec![".pdf".into(), ".php".into()];
        assert!(policy.accepts("A.PDF"));
        assert!(!policy.accepts("a.php"), "forbid wins over allow");
        assert!(!policy.accepts("noext"));
        assert_eq!(extension("a.tar.gz"), ".gz");
        assert_eq!(extension("dir.d/file"), "");
    }

    #[test]
    fn malformed_bodies_and_conflicts_are_errors_and_leave_no_file() {
        let dir = scratch_dir("bad");
        let policy = policy(&dir);
        let no_boundary = store(BODY, b"multipart/form-data", &policy).unwrap_err();
        assert!(no_boundary.text.contains("boundary"));
        assert_eq!(no_boundary.status, 400);
        let conflict =
            b"--X\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a.txt\"\r\n\r\n1\r\n\
            --X\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n\
            --X\r\nContent-Disposition: form-data; name=\"a[b]\"\r\n\r\n2\r\n--X--";
        let error = store(conflict, b"multipart/form-data; boundary=X", &policy).unwrap_err();
        assert!(error.text.contains("invalid multiple values"), "{error:?}");
        assert_eq!(error.status, 400);
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            0,
            "a file was left behind"
        );
        std::fs::remove_dir(&dir).unwrap();
    }
}
