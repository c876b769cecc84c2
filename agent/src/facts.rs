//! Host facts for the server's inventory: hostname, OS, kernel, architecture, agent version and
//! the configured labels. Read afresh for every batch, so a renamed host shows up promptly.

use std::collections::BTreeMap;

use yunwei_proto::HostFacts;

/// Gathers the facts of this host. Missing files give empty fields (and `unknown` for the
/// hostname, which the server requires); they never fail the batch.
pub fn host_facts(labels: &BTreeMap<String, String>) -> HostFacts {
    let read = |path: &str| std::fs::read_to_string(path).ok();
    let hostname = read("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_string());
    let os = read("/etc/os-release")
        .or_else(|| read("/usr/lib/os-release"))
        .and_then(|text| os_release_name(&text))
        .unwrap_or_else(|| std::env::consts::OS.to_string());
    let kernel = read("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    HostFacts {
        hostname,
        os,
        kernel,
        arch: std::env::consts::ARCH.to_string(),
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
        labels: labels.clone(),
    }
}

/// `PRETTY_NAME` (or else `NAME`) from os-release text, unquoted.
pub fn os_release_name(text: &str) -> Option<String> {
    let value = |key: &str| {
        text.lines().find_map(|line| {
            let v = line.trim().strip_prefix(key)?.strip_prefix('=')?;
            let v = v.trim();
            let v = ['"', '\'']
                .iter()
                .find_map(|q| v.strip_prefix(*q)?.strip_suffix(*q))
                .unwrap_or(v);
            (!v.is_empty()).then(|| v.to_string())
        })
    };
    value("PRETTY_NAME").or_else(|| value("NAME"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_release_prefers_pretty_name_and_unquotes() {
        let text = "NAME=\"Ubuntu\"\nVERSION_ID=\"24.04\"\nPRETTY_NAME=\"Ubuntu 24.04.1 LTS\"\n";
        assert_eq!(os_release_name(text).as_deref(), Some("Ubuntu 24.04.1 LTS"));
        assert_eq!(os_release_name("NAME='Kylin'\n").as_deref(), Some("Kylin"));
        assert_eq!(
            os_release_name("PRETTY_NAME=\nNAME=Alpine\n").as_deref(),
            Some("Alpine")
        );
        assert_eq!(os_release_name("PRETTY_NAME_X=1\n"), None);
    }

    #[test]
    fn facts_carry_version_arch_and_labels() {
        let labels = BTreeMap::from([("system".to_string(), "门户".to_string())]);
        let f = host_facts(&labels);
        assert!(!f.hostname.is_empty());
        assert_eq!(f.agent_version, env!("CARGO_PKG_VERSION"));
        assert_eq!(f.arch, std::env::consts::ARCH);
        assert_eq!(f.labels, labels);
    }
}
