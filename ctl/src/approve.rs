//! `mk8s-ctl approve`: apply [`crate::policy`] to the cluster's pending
//! `kubernetes.io/kubelet-serving` and `kubernetes.io/kube-apiserver-client`
//! requests, once or as they come (a LIST, then a WATCH from its
//! resourceVersion, listed again when the watch expires). A field selector
//! takes one signer, not two, so both read every request and pass over other
//! signers' without a word.
//!
//! A decision is written through the `approval` subresource with the request's
//! resourceVersion (a request someone decided meanwhile answers 409 and is left
//! as they decided), then appended to the audit log, then printed. Requests left
//! alone (not a node's) are printed once per run, not at every event, and not
//! logged: the audit log holds what was done to the cluster.

use std::collections::BTreeSet;
use std::io::Write;

use anyhow::Context as _;
use futures_util::StreamExt as _;
use k8s_openapi::api::certificates::v1::{CertificateSigningRequest, CertificateSigningRequestCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use kube::Client;
use mk8s_gen::model::Facts;

use crate::audit::{AuditLog, Record};
use crate::policy::{self, Decision, Verdict};

/// How a run behaves.
pub struct Settings<'a> {
    pub facts: &'a Facts,
    /// Decide and print, change nothing: the approval is sent as a server-side
    /// dry run (so missing permissions still show) and no audit record is written.
    pub dry_run: bool,
    pub audit: Option<AuditLog>,
}

/// What a run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tally {
    pub approved: usize,
    pub denied: usize,
    pub ignored: usize,
}

/// The state of one run: requests already reported (by uid) and the counts.
pub struct Approver<'a> {
    api: Api<CertificateSigningRequest>,
    settings: Settings<'a>,
    seen: BTreeSet<String>,
    pub tally: Tally,
}

impl<'a> Approver<'a> {
    pub fn new(client: Client, settings: Settings<'a>) -> Approver<'a> {
        Approver { api: Api::all(client), settings, seen: BTreeSet::new(), tally: Tally::default() }
    }

    /// Decide every pending request once; the resourceVersion of the LIST.
    pub async fn once(&mut self, out: &mut dyn Write) -> anyhow::Result<String> {
        let mut params = ListParams::default().limit(crate::client::PAGE);
        loop {
            let page = self.api.list(&params).await.context("cannot list CertificateSigningRequests")?;
            for csr in &page.items {
                self.handle(csr, out).await?;
            }
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(token) => params = params.continue_token(&token),
                None => return Ok(page.metadata.resource_version.unwrap_or_default()),
            }
        }
    }

    /// Decide pending requests as they come, until the connection fails.
    pub async fn watch(&mut self, out: &mut dyn Write) -> anyhow::Result<()> {
        let mut version = self.once(out).await?;
        loop {
            let params = WatchParams::default().timeout(290);
            let mut stream =
                self.api.watch(&params, &version).await.context("cannot watch CertificateSigningRequests")?.boxed();
            let mut expired = false;
            while let Some(event) = stream.next().await {
                match event.context("watching CertificateSigningRequests")? {
                    WatchEvent::Added(csr) | WatchEvent::Modified(csr) => {
                        version = csr.metadata.resource_version.clone().unwrap_or(version);
                        self.handle(&csr, out).await?;
                    }
                    WatchEvent::Deleted(csr) => version = csr.metadata.resource_version.unwrap_or(version),
                    WatchEvent::Bookmark(b) => version = b.metadata.resource_version,
                    // 410 Gone: the resourceVersion is too old; list again.
                    WatchEvent::Error(e) if e.code == 410 => expired = true,
                    WatchEvent::Error(e) => anyhow::bail!("watching CertificateSigningRequests: {}", e.message),
                }
            }
            if expired {
                version = self.once(out).await?;
            }
        }
    }

    /// Decide one request, if it is pending and not yet reported in this run.
    async fn handle(&mut self, csr: &CertificateSigningRequest, out: &mut dyn Write) -> anyhow::Result<()> {
        if !policy::is_pending(csr) || !policy::SIGNERS.contains(&csr.spec.signer_name.as_str()) {
            return Ok(());
        }
        let uid = csr.metadata.uid.clone().unwrap_or_default();
        let decision = policy::decide(csr, self.settings.facts);
        if decision.verdict == Verdict::Ignore {
            if self.seen.insert(uid) {
                self.tally.ignored += 1;
                self.report(csr, &decision, out)?;
            }
            return Ok(());
        }
        if !self.write(csr, &decision).await? {
            return Ok(());
        }
        match decision.verdict {
            Verdict::Approve => self.tally.approved += 1,
            _ => self.tally.denied += 1,
        }
        self.report(csr, &decision, out)
    }

    /// Send the decision; `false` when someone else decided the request first.
    async fn write(&self, csr: &CertificateSigningRequest, decision: &Decision) -> anyhow::Result<bool> {
        let name = csr.metadata.name.as_deref().unwrap_or_default();
        let mut updated = csr.clone();
        let status = updated.status.get_or_insert_with(Default::default);
        status.conditions.get_or_insert_with(Vec::new).push(CertificateSigningRequestCondition {
            type_: if decision.verdict == Verdict::Approve { "Approved" } else { "Denied" }.into(),
            status: "True".into(),
            reason: Some(decision.reason.into()),
            message: Some(format!("mk8s-ctl: {}", decision.message)),
            last_update_time: Some(Time(k8s_openapi::jiff::Timestamp::now())),
            ..Default::default()
        });
        let params = PostParams { dry_run: self.settings.dry_run, ..Default::default() };
        match self.api.replace_subresource("approval", name, &params, &updated).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e).with_context(|| format!("cannot record the decision on CertificateSigningRequest {name}")),
        }
    }

    /// Append an approval or a denial to the audit log (not on a dry run), then
    /// print one line.
    fn report(&mut self, csr: &CertificateSigningRequest, d: &Decision, out: &mut dyn Write) -> anyhow::Result<()> {
        let record = Record {
            time: crate::status::rfc3339(time::OffsetDateTime::now_utc()),
            csr: csr.metadata.name.clone().unwrap_or_default(),
            uid: csr.metadata.uid.clone().unwrap_or_default(),
            signer: csr.spec.signer_name.clone(),
            requester: csr.spec.username.clone().unwrap_or_default(),
            node: d.node.clone(),
            decision: d.verdict.clone(),
            reason: d.reason.into(),
            message: d.message.clone(),
        };
        if !self.settings.dry_run && d.verdict != Verdict::Ignore {
            if let Some(log) = &mut self.settings.audit {
                log.append(&record).context("cannot append to the audit log")?;
            }
        }
        let verb = match (&d.verdict, self.settings.dry_run) {
            (Verdict::Approve, false) => "approved",
            (Verdict::Deny, false) => "denied",
            (Verdict::Approve, true) => "would approve",
            (Verdict::Deny, true) => "would deny",
            (Verdict::Ignore, _) => "left alone",
        };
        writeln!(out, "{verb} {} from {}: {} ({})", record.csr, record.requester, d.message, d.reason)?;
        out.flush()?;
        Ok(())
    }
}
