//! Valgrind client requests, as `valgrind.h` and `memcheck.h` issue them: a magic sequence of
//! instructions that does nothing on a real CPU and that valgrind's JIT recognises. Only the
//! two requests the leak check needs: "am I running under valgrind" and "do a leak check".
//! On architectures other than x86_64 and aarch64 every request answers its default (not
//! under valgrind).

/// `VG_USERREQ__RUNNING_ON_VALGRIND` (valgrind.h).
const RUNNING_ON_VALGRIND: usize = 0x1001;
/// `VG_USERREQ__DO_LEAK_CHECK`: `VG_USERREQ_TOOL_BASE('M','C') + 6` (memcheck.h).
const DO_LEAK_CHECK: usize = (b'M' as usize) << 24 | (b'C' as usize) << 16 | 6;

/// Which of memcheck's leak checks to run, as SRS's `?check=` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeakCheck {
    /// `VALGRIND_DO_LEAK_CHECK`: every leak, in full.
    Full,
    /// `VALGRIND_DO_ADDED_LEAK_CHECK`: leaks that grew since the previous check.
    Added,
    /// `VALGRIND_DO_CHANGED_LEAK_CHECK`: leaks that grew or shrank.
    Changed,
    /// `VALGRIND_DO_NEW_LEAK_CHECK`: leaks not reported before (valgrind 3.21+).
    New,
    /// `VALGRIND_DO_QUICK_LEAK_CHECK`: a summary only.
    Quick,
}

impl LeakCheck {
    /// Parses `?check=`; anything else is a full check, as in SRS.
    pub fn parse(s: &str) -> Self {
        match s {
            "added" => Self::Added,
            "changed" => Self::Changed,
            "new" => Self::New,
            "quick" => Self::Quick,
            _ => Self::Full,
        }
    }

    /// The name SRS answers with.
    pub fn name(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Added => "added",
            Self::Changed => "changed",
            Self::New => "new",
            Self::Quick => "quick",
        }
    }

    /// The memcheck.h macro it stands for.
    pub fn call(self) -> &'static str {
        match self {
            Self::Full => "VALGRIND_DO_LEAK_CHECK",
            Self::Added => "VALGRIND_DO_ADDED_LEAK_CHECK",
            Self::Changed => "VALGRIND_DO_CHANGED_LEAK_CHECK",
            Self::New => "VALGRIND_DO_NEW_LEAK_CHECK",
            Self::Quick => "VALGRIND_DO_QUICK_LEAK_CHECK",
        }
    }

    /// The first two arguments of `VG_USERREQ__DO_LEAK_CHECK` for this check (memcheck.h).
    fn args(self) -> (usize, usize) {
        match self {
            Self::Full => (0, 0),
            Self::Added => (0, 1),
            Self::Changed => (0, 2),
            Self::New => (0, 3),
            Self::Quick => (1, 0),
        }
    }
}

/// True when the process runs under valgrind.
pub fn running_on_valgrind() -> bool {
    client_request(0, [RUNNING_ON_VALGRIND, 0, 0, 0, 0, 0]) != 0
}

/// Asks memcheck for a leak check; its report goes to valgrind's log. Does nothing outside
/// valgrind.
pub fn leak_check(check: LeakCheck) {
    let (a, b) = check.args();
    client_request(0, [DO_LEAK_CHECK, a, b, 0, 0, 0]);
}

/// `VALGRIND_DO_CLIENT_REQUEST_EXPR`: `args` is the request and its five arguments.
#[cfg(target_arch = "x86_64")]
fn client_request(default: usize, args: [usize; 6]) -> usize {
    let result: usize;
    // SAFETY: on a real CPU the four rotations of rdi add up to 128 bits (rdi is restored)
    // and `xchg rbx, rbx` changes nothing, so this reads nothing and writes only rdx (and
    // rdi, declared clobbered). Under valgrind it is the documented client-request
    // sequence: valgrind reads the six words at rax, which live on this stack frame for the
    // duration of the asm, and writes its answer to rdx.
    unsafe {
        std::arch::asm!(
            "rol rdi, 3",
            "rol rdi, 13",
            "rol rdi, 61",
            "rol rdi, 51",
            "xchg rbx, rbx",
            in("rax") args.as_ptr(),
            inout("rdx") default => result,
            inout("rdi") 0usize => _,
            options(nostack),
        );
    }
    result
}

/// `VALGRIND_DO_CLIENT_REQUEST_EXPR`: `args` is the request and its five arguments.
#[cfg(target_arch = "aarch64")]
fn client_request(default: usize, args: [usize; 6]) -> usize {
    let result: usize;
    // SAFETY: on a real CPU the four rotations of x12 add up to 128 bits (x12 is restored)
    // and `orr x10, x10, x10` changes nothing, so this writes only x3 and x4 (declared).
    // Under valgrind it is the documented client-request sequence: valgrind reads the six
    // words at x4, which live on this stack frame for the duration of the asm, and writes
    // its answer to x3.
    unsafe {
        std::arch::asm!(
            "ror x12, x12, #3",
            "ror x12, x12, #13",
            "ror x12, x12, #51",
            "ror x12, x12, #61",
            "orr x10, x10, x10",
            inout("x3") default => result,
            in("x4") args.as_ptr(),
            inout("x12") 0usize => _,
            options(nostack),
        );
    }
    result
}

/// Other architectures: never under valgrind as far as ringcast knows.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn client_request(default: usize, _args: [usize; 6]) -> usize {
    default
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_magic_sequence_is_a_no_op_on_a_real_cpu() {
        // The suite does not run under valgrind: the request answers its default, and a leak
        // check request does nothing.
        assert!(!running_on_valgrind());
        leak_check(LeakCheck::Added);
        assert_eq!(client_request(42, [RUNNING_ON_VALGRIND, 0, 0, 0, 0, 0]), 42);
    }

    #[test]
    fn checks_parse_as_srs_does() {
        assert_eq!(LeakCheck::parse("added"), LeakCheck::Added);
        assert_eq!(LeakCheck::parse("bogus"), LeakCheck::Full);
        assert_eq!(
            LeakCheck::parse("quick").call(),
            "VALGRIND_DO_QUICK_LEAK_CHECK"
        );
        assert_eq!(DO_LEAK_CHECK, 0x4d43_0006);
    }
}
