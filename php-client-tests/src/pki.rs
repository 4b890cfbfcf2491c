//! Test certificates made with Debian's `openssl`: a CA, a server certificate for
//! `localhost` and 127.0.0.1, a client certificate the CA signed and one it did not (shared
//! by the TLS suites of the http and grpc plugins).

use crate::server::scratch_dir;
use std::path::PathBuf;
use std::process::Command;

/// A test CA, a server certificate for `localhost` and 127.0.0.1, and a client one.
#[derive(Debug)]
pub struct Pki {
    dir: PathBuf,
}

impl Pki {
    /// Makes them in a scratch folder; None (with a SKIPPED line) without `openssl` or
    /// `curl`.
    ///
    /// # Panics
    /// When openssl fails.
    #[must_use]
    pub fn make() -> Option<Self> {
        for tool in ["openssl", "curl"] {
            if Command::new(tool).arg("--version").output().is_err()
                && Command::new(tool).arg("version").output().is_err()
            {
                eprintln!("SKIPPED: {tool} is not installed; scripts/install-deps installs it");
                return None;
            }
        }
        let dir = scratch_dir().join("pki");
        std::fs::create_dir_all(&dir).unwrap();
        let pki = Self { dir };
        pki.key_and_certificate("ca", "/CN=ringrunner test CA", None);
        std::fs::write(
            pki.path("server.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
        )
        .unwrap();
        std::fs::write(pki.path("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
        pki.key_and_certificate("server", "/CN=localhost", Some("ca"));
        pki.key_and_certificate("client", "/CN=a client", Some("ca"));
        // A client certificate no CA of ours signed.
        pki.key_and_certificate("stranger", "/CN=a stranger", None);
        Some(pki)
    }

    /// A file of the folder (`ca.pem`, `server.key`, `client.pem`, `stranger.key`, …).
    #[must_use]
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// `<name>.key` and `<name>.pem` for `subject`: signed by the CA `signer` (with the
    /// extensions of `<name>.ext`), or self-signed.
    fn key_and_certificate(&self, name: &str, subject: &str, signer: Option<&str>) {
        let (key, pem, csr) = (
            format!("{name}.key"),
            format!("{name}.pem"),
            format!("{name}.csr"),
        );
        let new_key = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
        ];
        let Some(signer) = signer else {
            let mut args = vec!["req", "-x509"];
            args.extend(new_key);
            args.extend([key.as_str(), "-out", &pem, "-days", "2", "-subj", subject]);
            return self.openssl(&args);
        };
        let mut args = vec!["req"];
        args.extend(new_key);
        args.extend([key.as_str(), "-out", &csr, "-subj", subject]);
        self.openssl(&args);
        let (ca, ca_key, ext) = (
            format!("{signer}.pem"),
            format!("{signer}.key"),
            format!("{name}.ext"),
        );
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "2",
            "-extfile",
            &ext,
        ]);
    }

    fn openssl(&self, args: &[&str]) {
        let output = Command::new("openssl")
            .args(args)
            .current_dir(&self.dir)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
