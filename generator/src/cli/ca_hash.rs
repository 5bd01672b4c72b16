//! `mk8s-gen ca-hash`.

use super::*;

pub(super) fn ca_hash(a: &CaHashArgs, io: &mut Io) -> Result<(), Failure> {
    // `-`: the certificate on stdin (`microk8s config | ...`, `cat ca.crt | ...`).
    let text = if a.file.as_os_str() == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .map_err(|e| Failure::Usage(format!("cannot read the CA certificate from stdin: {e}")))?;
        text
    } else {
        read(&a.file, "CA certificate")?
    };
    match crate::pki::CaCert::from_pem(&text) {
        Ok(ca) => {
            writeln!(io.stdout, "{}", ca.pin)?;
            Ok(())
        }
        Err(e) => {
            writeln!(io.stderr, "error: {}: {e}", a.file.display())?;
            Err(Failure::Invalid)
        }
    }
}
