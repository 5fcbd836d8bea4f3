//! The tuning scripts (tuning/sysctl.sh, tuning/irq-affinity.sh) run against a fake /proc and
//! /sys tree in a temporary directory (ROOT, PROC_ROOT, SYS_ROOT, SYSCTL_D), so every
//! subcommand, including the ones that write, is checked without touching this machine.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const SNMP_BEFORE: &str = "\
Ip: Forwarding DefaultTTL InReceives
Ip: 1 64 1000
Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors
Udp: 1000 3 0 2000 10 0 0 0 0
UdpLite: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors
UdpLite: 0 0 0 0 0 0 0 0 0
";

const SNMP_AFTER: &str = "\
Ip: Forwarding DefaultTTL InReceives
Ip: 1 64 9000
Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors
Udp: 6000 3 0 4500 160 0 0 0 0
UdpLite: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors
UdpLite: 0 0 0 0 0 0 0 0 0
";

const UDP: &str = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  100: 00000000:1F40 00000000:0000 07 00000000:00012C00 00:00000000 00000000     0        0 4242 2 0000000000000000 17
  101: 0100007F:0035 00000000:0000 07 00000200:00000000 00:00000000 00000000     0        0 5151 2 0000000000000000 0
";

const UDP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  200: 00000000000000000000000000000000:1F40 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4343 2 0000000000000000 0
  201: 00000000000000000000000001000000:1F41 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4444 2 0000000000000000 0
";

const INTERRUPTS: &str = "           CPU0       CPU1       CPU2       CPU3
 24:          1          0          0          0  IO-APIC   5-edge      ACPI:Ged
 37:          0          0          0          0  PCI-MSIX-0000:00:03.0   0-edge      virtio2-config
 38:          0       1731          0          0  PCI-MSIX-0000:00:03.0   1-edge      virtio2-input.0
 39:       1417          0          0          0  PCI-MSIX-0000:00:03.0   2-edge      virtio2-output.0
 50:        900        100          0          0  IR-PCI-MSI 524288-edge      ens5-TxRx-0
 51:          0        800          0          0  IR-PCI-MSI 524289-edge      ens5-TxRx-1
 52:          3          0          0          0  IR-PCI-MSI 524290-edge      ens5
 60:          0          0         10          0  IR-PCI-MSI 1048576-edge      mlx5_comp0@pci:0000:5e:00.0
 61:          0          0          1          0  IR-PCI-MSI 1048577-edge      mlx5_async0@pci:0000:5e:00.0
NMI:          0          0          0          0   Non-maskable interrupts
";

/// IRQs of the fake tree, with the affinity each starts with.
const IRQS: &[(u32, &str, &str)] = &[
    (24, "0-3", "f"),
    (37, "0-3", "f"),
    (38, "0-3", "f"),
    (39, "1", "2"),
    (50, "0-3", "f"),
    (51, "2-3", "c"),
    (52, "0-3", "f"),
    (60, "0", "1"),
    (61, "0-3", "f"),
];

/// A fake machine: ROOT/proc, ROOT/sys, ROOT/etc/sysctl.d.
struct FakeRoot {
    dir: tempfile::TempDir,
}

impl FakeRoot {
    fn new() -> Self {
        let root = Self {
            dir: tempfile::tempdir().expect("temp dir"),
        };
        for (key, value) in [
            ("net/core/rmem_max", "4194304"),
            ("net/core/rmem_default", "212992"),
            ("net/core/wmem_max", "33554432"),
            ("net/core/wmem_default", "212992"),
            ("net/core/netdev_max_backlog", "1000"),
            ("net/core/somaxconn", "4096"),
            ("fs/file-max", "9223372036854775807"),
        ] {
            root.write(&format!("proc/sys/{key}"), &format!("{value}\n"));
        }
        root.write("proc/net/snmp", SNMP_BEFORE);
        root.write("proc/net/udp", UDP);
        root.write("proc/net/udp6", UDP6);
        root.write("proc/1/cgroup", "0::/\n");
        root.write("proc/1/comm", "systemd\n");
        root.write("proc/700/comm", "ringcast\n");
        root.write("proc/800/comm", "dnsmasq\n");
        root.mkdir("proc/700/fd");
        root.mkdir("proc/800/fd");
        root.link("socket:[4242]", "proc/700/fd/7");
        root.link("socket:[4343]", "proc/700/fd/8");
        root.link("/dev/null", "proc/700/fd/0");
        root.link("socket:[5151]", "proc/800/fd/3");
        root.write("proc/interrupts", INTERRUPTS);
        for (irq, list, mask) in IRQS {
            root.write(
                &format!("proc/irq/{irq}/smp_affinity_list"),
                &format!("{list}\n"),
            );
            root.write(
                &format!("proc/irq/{irq}/smp_affinity"),
                &format!("{mask}\n"),
            );
        }
        // eth0: virtio, whose IRQs are named after the device (virtio2-input.0); ens5: named
        // after the interface; ib0: mlx5, named after the PCI address; lo: no device.
        root.mkdir("sys/devices/pci0000:00/0000:00:03.0/virtio2");
        root.mkdir("sys/devices/pci0000:00/0000:00:05.0");
        root.mkdir("sys/devices/pci0000:00/0000:5e:00.0");
        for (iface, dev) in [
            ("eth0", "pci0000:00/0000:00:03.0/virtio2"),
            ("ens5", "pci0000:00/0000:00:05.0"),
            ("ib0", "pci0000:00/0000:5e:00.0"),
        ] {
            root.mkdir(&format!("sys/class/net/{iface}"));
            root.link(
                &format!("../../../devices/{dev}"),
                &format!("sys/class/net/{iface}/device"),
            );
        }
        root.mkdir("sys/class/net/lo");
        root.write("sys/devices/system/cpu/online", "0-3\n");
        root
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn write(&self, rel: &str, text: &str) {
        let path = self.path(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }

    fn mkdir(&self, rel: &str) {
        std::fs::create_dir_all(self.path(rel)).unwrap();
    }

    fn link(&self, target: &str, rel: &str) {
        symlink(target, self.path(rel)).unwrap();
    }

    /// Every file's content and every link's target, to prove a run changed nothing.
    fn snapshot(&self) -> BTreeMap<PathBuf, String> {
        fn walk(dir: &Path, out: &mut BTreeMap<PathBuf, String>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                let meta = std::fs::symlink_metadata(&path).unwrap();
                if meta.is_symlink() {
                    let target = std::fs::read_link(&path).unwrap();
                    out.insert(path, format!("-> {}", target.display()));
                } else if meta.is_dir() {
                    out.insert(path.clone(), "dir".into());
                    walk(&path, out);
                } else {
                    out.insert(path.clone(), std::fs::read_to_string(&path).unwrap());
                }
            }
        }
        let mut out = BTreeMap::new();
        walk(self.dir.path(), &mut out);
        out
    }

    fn command(&self, script: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tuning")
                .join(script),
        );
        cmd.args(args)
            .env("ROOT", self.dir.path())
            .env_remove("PROC_ROOT")
            .env_remove("SYS_ROOT")
            .env_remove("SYSCTL_D")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs a script to completion; returns (exit code, stdout, stderr).
    fn run(&self, script: &str, args: &[&str]) -> (i32, String, String) {
        let Output {
            status,
            stdout,
            stderr,
        } = self
            .command(script, args)
            .output()
            .unwrap_or_else(|e| panic!("running {script}: {e}"));
        (
            status.code().unwrap_or(-1),
            String::from_utf8_lossy(&stdout).into_owned(),
            String::from_utf8_lossy(&stderr).into_owned(),
        )
    }

    /// Runs a script that must succeed; returns its stdout.
    fn ok(&self, script: &str, args: &[&str]) -> String {
        let (code, out, err) = self.run(script, args);
        assert_eq!(code, 0, "{script} {args:?} failed:\n{out}\n{err}");
        out
    }
}

/// The line of `out`, with runs of spaces collapsed, that starts with `prefix`.
fn line(out: &str, prefix: &str) -> String {
    out.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting with {prefix:?} in:\n{out}"))
}

#[test]
fn sysctl_query_shows_current_and_recommended() {
    let root = FakeRoot::new();
    let out = root.ok("sysctl.sh", &["query"]);
    assert!(line(&out, "net.core.rmem_max").starts_with("net.core.rmem_max 4194304 16777216 raise"));
    assert!(line(&out, "net.core.wmem_max").starts_with("net.core.wmem_max 33554432 16777216 ok"));
    assert!(line(&out, "net.core.netdev_max_backlog")
        .starts_with("net.core.netdev_max_backlog 1000 16384 raise"));
    assert!(line(&out, "net.core.somaxconn").starts_with("net.core.somaxconn 4096 4096 ok"));
    assert!(line(&out, "fs.file-max").starts_with("fs.file-max 9223372036854775807 1048576 ok"));
    assert!(!out.contains("container"), "no container here:\n{out}");

    let out = root.ok("sysctl.sh", &["--udp-buffer", "64M", "query"]);
    assert!(line(&out, "net.core.wmem_max").contains(" 67108864 raise"));

    // A setting the kernel lacks is reported, not fatal.
    std::fs::remove_file(root.path("proc/sys/net/core/netdev_max_backlog")).unwrap();
    let out = root.ok("sysctl.sh", &["query"]);
    assert!(line(&out, "net.core.netdev_max_backlog").contains("- 16384 missing"));
}

#[test]
fn sysctl_explains_containers() {
    let root = FakeRoot::new();
    let note = "set them on the host";
    root.write(".dockerenv", "");
    let out = root.ok("sysctl.sh", &["query"]);
    assert!(
        out.contains("inside a container") && out.contains(note),
        "{out}"
    );
    assert!(out.contains("--network=host"), "{out}");
    std::fs::remove_file(root.path(".dockerenv")).unwrap();
    root.write(
        "proc/1/cgroup",
        "12:pids:/docker/0123456789abcdef\n0::/docker/0123456789abcdef\n",
    );
    let out = root.ok("sysctl.sh", &["apply", "--dry-run"]);
    assert!(out.contains("cgroup names a container runtime") && out.contains(note));
}

#[test]
fn sysctl_apply_dry_run_changes_nothing() {
    let root = FakeRoot::new();
    let before = root.snapshot();
    let out = root.ok("sysctl.sh", &["--dry-run", "apply"]);
    assert_eq!(root.snapshot(), before, "--dry-run changed the tree");
    assert!(out.contains("would set net.core.rmem_max: 4194304 -> 16777216"));
    assert!(out.contains("would set net.core.netdev_max_backlog: 1000 -> 16384"));
    assert!(out.contains("keep net.core.wmem_max = 33554432"));
    assert!(out.contains("dry run: nothing changed"));
}

#[test]
fn sysctl_apply_raises_and_never_lowers() {
    let root = FakeRoot::new();
    let out = root.ok("sysctl.sh", &["apply", "--udp-buffer", "8M"]);
    assert!(
        out.contains("set net.core.rmem_max: 4194304 -> 8388608"),
        "{out}"
    );
    for (key, want) in [
        ("net/core/rmem_max", "8388608"),
        ("net/core/rmem_default", "8388608"),
        // Already above 8M: left alone.
        ("net/core/wmem_max", "33554432"),
        ("net/core/wmem_default", "8388608"),
        ("net/core/netdev_max_backlog", "16384"),
        ("net/core/somaxconn", "4096"),
        ("fs/file-max", "9223372036854775807"),
    ] {
        assert_eq!(root.read(&format!("proc/sys/{key}")).trim(), want, "{key}");
    }
    // Everything is now at its recommendation: a second run keeps all.
    let out = root.ok("sysctl.sh", &["apply", "--udp-buffer=8M"]);
    assert_eq!(out.lines().filter(|l| l.starts_with("keep ")).count(), 7);

    let (code, _, err) = root.run("sysctl.sh", &["apply", "--udp-buffer", "lots"]);
    assert_eq!(code, 2);
    assert!(err.contains("is not a size"), "{err}");
}

#[test]
fn sysctl_persist_writes_sysctl_d() {
    let root = FakeRoot::new();
    let conf = "etc/sysctl.d/90-ringcast.conf";
    let before = root.snapshot();
    let out = root.ok("sysctl.sh", &["persist", "--dry-run"]);
    assert_eq!(root.snapshot(), before, "--dry-run changed the tree");
    assert!(out.contains("would write ") && out.contains("net.core.rmem_max = 16777216"));

    let out = root.ok("sysctl.sh", &["persist"]);
    let text = root.read(conf);
    let settings: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(
        settings,
        [
            "net.core.rmem_max = 16777216",
            "net.core.rmem_default = 16777216",
            // The machine's higher values are kept, never lowered at the next boot.
            "net.core.wmem_max = 33554432",
            "net.core.wmem_default = 16777216",
            "net.core.netdev_max_backlog = 16384",
            "net.core.somaxconn = 4096",
            "fs.file-max = 9223372036854775807",
        ]
    );
    assert!(
        out.contains("loads at boot") && out.contains("sysctl --system"),
        "{out}"
    );
    // The kernel itself is not touched by persist.
    assert_eq!(root.read("proc/sys/net/core/rmem_max").trim(), "4194304");
    let out = root.ok("sysctl.sh", &["persist"]);
    assert!(out.contains("is up to date"), "{out}");

    // SYSCTL_D moves the file.
    let mut cmd = root.command("sysctl.sh", &["persist"]);
    let elsewhere = root.path("custom/sysctl.d");
    let status = cmd
        .env("SYSCTL_D", &elsewhere)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    assert!(elsewhere.join("90-ringcast.conf").exists());
}

#[test]
fn sysctl_watch_prints_deltas_and_rates() {
    let root = FakeRoot::new();
    let mut child = root
        .command("sysctl.sh", &["watch", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting watch");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // The first line comes after the first reading: swap in the second snapshot then.
    let first = lines.next().expect("a first line").unwrap();
    assert!(first.starts_with("Watching UDP for 1 s"), "{first}");
    let tmp = root.path("proc/net/snmp.new");
    std::fs::write(&tmp, SNMP_AFTER).unwrap();
    std::fs::rename(&tmp, root.path("proc/net/snmp")).unwrap();
    let started = Instant::now();
    let out: Vec<String> = lines.map(Result::unwrap).collect();
    assert!(child.wait().unwrap().success());
    assert!(started.elapsed() < Duration::from_secs(10));
    let out = out.join("\n");
    assert_eq!(
        line(&out, "packets received"),
        "packets received 1000 6000 5000 5000.0"
    );
    assert_eq!(
        line(&out, "packets sent"),
        "packets sent 2000 4500 2500 2500.0"
    );
    assert_eq!(
        line(&out, "receive buffer errors"),
        "receive buffer errors 10 160 150 150.0"
    );
    assert_eq!(
        line(&out, "send buffer errors"),
        "send buffer errors 0 0 0 0.0"
    );
    assert!(out.contains("Receive buffer errors grew"), "{out}");
    assert!(!out.contains("Send buffer errors grew"), "{out}");

    let (code, _, err) = root.run("sysctl.sh", &["watch", "soon"]);
    assert_eq!(code, 2);
    assert!(err.contains("not a whole number of seconds"), "{err}");
}

#[test]
fn sysctl_queues_lists_udp_sockets_with_owners() {
    let root = FakeRoot::new();
    let out = root.ok("sysctl.sh", &["queues"]);
    // rx_queue 0x12C00 = 76800 bytes waiting, 17 drops, owned by ringcast.
    assert_eq!(
        line(&out, "udp 76800"),
        "udp 76800 0 0.0.0.0:8000 17 700/ringcast"
    );
    assert_eq!(
        line(&out, "udp 0 512"),
        "udp 0 512 127.0.0.1:53 0 800/dnsmasq"
    );
    assert_eq!(
        line(&out, "udp6 0 0 [::]"),
        "udp6 0 0 [::]:8000 0 700/ringcast"
    );
    assert_eq!(line(&out, "udp6 0 0 [::1]"), "udp6 0 0 [::1]:8001 0 -");
    assert!(out.contains("Some sockets dropped datagrams"), "{out}");
}

#[test]
fn sysctl_usage_errors() {
    let root = FakeRoot::new();
    let (code, _, err) = root.run("sysctl.sh", &[]);
    assert_eq!(code, 2);
    assert!(err.contains("Usage:"), "{err}");
    let (code, _, err) = root.run("sysctl.sh", &["tune"]);
    assert_eq!(code, 2);
    assert!(err.contains("unknown command"), "{err}");
    let out = root.ok("sysctl.sh", &["--help"]);
    for cmd in ["query", "apply", "persist", "watch", "queues", "--dry-run"] {
        assert!(out.contains(cmd), "help lacks {cmd}");
    }
}

#[test]
fn irq_list_finds_nic_queue_irqs() {
    let root = FakeRoot::new();
    let out = root.ok("irq-affinity.sh", &["list"]);
    let rows: Vec<String> = out
        .lines()
        .filter(|l| l.starts_with(|c: char| c.is_ascii_digit()))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    // Config, async and device-wide interrupts and non-NIC ones are left out.
    assert_eq!(
        rows,
        [
            "38 eth0 virtio2-input.0 0-3 f",
            "39 eth0 virtio2-output.0 1 2",
            "50 ens5 ens5-TxRx-0 0-3 f",
            "51 ens5 ens5-TxRx-1 2-3 c",
            "52 ens5 ens5 0-3 f",
            "60 ib0 mlx5_comp0@pci:0000:5e:00.0 0 1",
        ]
    );
    // The default command is list.
    assert_eq!(root.ok("irq-affinity.sh", &[]), out);
    let out = root.ok("irq-affinity.sh", &["--iface", "ens5"]);
    assert!(
        out.contains("ens5-TxRx-1") && !out.contains("virtio2"),
        "{out}"
    );
    let out = root.ok("irq-affinity.sh", &["--iface=lo", "list"]);
    assert!(
        out.contains("no NIC queue interrupts found for lo"),
        "{out}"
    );
    let (code, _, err) = root.run("irq-affinity.sh", &["--iface", "wlan9"]);
    assert_eq!(code, 2);
    assert!(err.contains("no interface wlan9"), "{err}");
}

#[test]
fn irq_bind_dry_run_changes_nothing() {
    let root = FakeRoot::new();
    let before = root.snapshot();
    let out = root.ok("irq-affinity.sh", &["--dry-run", "bind"]);
    assert_eq!(root.snapshot(), before, "--dry-run changed the tree");
    assert!(out.contains("would bind IRQ 38 (eth0 virtio2-input.0): CPUs 0-3 -> 0"));
    assert!(out.contains("keep IRQ 60 (ib0 mlx5_comp0@pci:0000:5e:00.0) on CPUs 0"));
    assert!(out.contains("dry run: nothing changed"));
}

#[test]
fn irq_bind_writes_affinity() {
    let root = FakeRoot::new();
    let out = root.ok("irq-affinity.sh", &["bind"]);
    assert!(
        out.contains("bound IRQ 51 (ens5 ens5-TxRx-1): CPUs 2-3 -> 0"),
        "{out}"
    );
    let list = |irq: u32| root.read(&format!("proc/irq/{irq}/smp_affinity_list"));
    for irq in [38, 39, 50, 51, 52, 60] {
        assert_eq!(list(irq).trim(), "0", "IRQ {irq}");
    }
    // Not NIC queues: untouched.
    for irq in [24, 37, 61] {
        assert_eq!(list(irq).trim(), "0-3", "IRQ {irq}");
    }

    // A mask, one interface; irqbalance running is warned about.
    root.write("proc/900/comm", "irqbalance\n");
    let (code, out, err) = root.run("irq-affinity.sh", &["--iface", "eth0", "bind", "0x6"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("CPUs 0 -> 1-2"), "{out}");
    assert!(err.contains("irqbalance is running"), "{err}");
    assert_eq!(list(38).trim(), "1-2");
    assert_eq!(list(50).trim(), "0");
    root.ok("irq-affinity.sh", &["--iface", "eth0", "bind", "3,1,2"]);
    assert_eq!(list(38).trim(), "1-3");

    for (bad, why) in [
        ("4", "CPU 4 is not online"),
        ("x", "is not a CPU list"),
        ("3-1", "is not a CPU list"),
        ("0x0", "names no CPU"),
    ] {
        let (code, _, err) = root.run("irq-affinity.sh", &["bind", bad]);
        assert_eq!(code, 2, "{bad}");
        assert!(err.contains(why), "{bad}: {err}");
    }
}

#[test]
fn scripts_are_shellcheck_clean() {
    if !common::require("shellcheck") {
        return;
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tuning");
    let out = Command::new("shellcheck")
        .arg(dir.join("sysctl.sh"))
        .arg(dir.join("irq-affinity.sh"))
        .output()
        .expect("running shellcheck");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
