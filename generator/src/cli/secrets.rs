//! `mk8s-gen secrets init | set-ca-key`.

use super::*;

pub(super) fn secrets_init(out: &Path, ca_key_file: Option<&str>, io: &mut Io) -> Result<(), Failure> {
    crate::secrets::init(out, ca_key_file)
        .map_err(|e| Failure::Usage(format!("cannot create {}: {e}", out.display())))?;
    writeln!(io.stderr, "wrote {} (0600): keep it private and out of version control", out.display())?;
    Ok(())
}

pub(super) fn secrets_set_ca_key(path: &Path, ca_key_file: &str, io: &mut Io) -> Result<(), Failure> {
    let text = read(path, "secrets file")?;
    let key_path = path.parent().unwrap_or(Path::new(".")).join(ca_key_file);
    let key = read(&key_path, "CA key")?;
    if !(key.contains("-----BEGIN") && key.contains("PRIVATE KEY-----")) {
        return Err(Failure::Usage(format!("{} holds no PEM private key", key_path.display())));
    }
    let new = crate::secrets::with_ca_key_file(&text, ca_key_file)
        .map_err(|e| Failure::Usage(format!("cannot change {}: {e}", path.display())))?;
    write_output(path, new.as_bytes(), 0o600)?;
    writeln!(io.stderr, "{}: ca-key-file set to {ca_key_file} (0600); the token seed is unchanged", path.display())?;
    Ok(())
}
