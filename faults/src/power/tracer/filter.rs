//! The seccomp filter (classic BPF over struct seccomp_data): which
//! syscalls stop for the tracer.

const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
const SECCOMP_RET_TRACE: u32 = 0x7ff0_0000;
const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const fn off_arg(i: u32) -> u32 {
    16 + 8 * i
}
fn stmt(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt: 0, jf: 0, k }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// Syscalls that always stop for the tracer.
fn traced_syscalls() -> Vec<i64> {
    vec![
        libc::SYS_write,
        libc::SYS_pwrite64,
        libc::SYS_writev,
        libc::SYS_pwritev,
        libc::SYS_pwritev2,
        libc::SYS_ftruncate,
        libc::SYS_truncate,
        libc::SYS_fallocate,
        libc::SYS_copy_file_range,
        libc::SYS_rename,
        libc::SYS_renameat,
        libc::SYS_renameat2,
        libc::SYS_unlink,
        libc::SYS_unlinkat,
        libc::SYS_link,
        libc::SYS_linkat,
        libc::SYS_fsync,
        libc::SYS_fdatasync,
        libc::SYS_sync_file_range,
        libc::SYS_syncfs,
        libc::SYS_sync,
        libc::SYS_creat,
        libc::SYS_openat2,
    ]
}

/// The filter: trace the list above, openat/open only with O_TRUNC or O_CREAT, mmap only
/// shared + writable; io_uring_setup and non-x86_64 ABIs get ENOSYS.
pub fn build_filter() -> Vec<libc::sock_filter> {
    const LD: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
    const JEQ: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
    const JGE: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
    const JSET: u16 = (libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K) as u16;
    const RET: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
    let enosys = SECCOMP_RET_ERRNO | libc::ENOSYS as u32;
    let mut f = vec![
        stmt(LD, OFF_ARCH),
        jump(JEQ, AUDIT_ARCH_X86_64, 1, 0),
        stmt(RET, enosys),
        stmt(LD, OFF_NR),
        jump(JGE, X32_SYSCALL_BIT, 0, 1),
        stmt(RET, enosys),
    ];
    for nr in traced_syscalls() {
        f.push(jump(JEQ, nr as u32, 0, 1));
        f.push(stmt(RET, SECCOMP_RET_TRACE));
    }
    f.push(jump(JEQ, libc::SYS_io_uring_setup as u32, 0, 1));
    f.push(stmt(RET, enosys));
    for (nr, arg) in [(libc::SYS_openat, 2), (libc::SYS_open, 1)] {
        f.push(jump(JEQ, nr as u32, 0, 4));
        f.push(stmt(LD, off_arg(arg)));
        f.push(jump(JSET, (libc::O_TRUNC | libc::O_CREAT) as u32, 0, 1));
        f.push(stmt(RET, SECCOMP_RET_TRACE));
        f.push(stmt(RET, SECCOMP_RET_ALLOW));
    }
    f.push(jump(JEQ, libc::SYS_mmap as u32, 0, 6));
    f.push(stmt(LD, off_arg(2)));
    f.push(jump(JSET, libc::PROT_WRITE as u32, 0, 3));
    f.push(stmt(LD, off_arg(3)));
    f.push(jump(JSET, libc::MAP_SHARED as u32, 0, 1));
    f.push(stmt(RET, SECCOMP_RET_TRACE));
    f.push(stmt(RET, SECCOMP_RET_ALLOW));
    f.push(stmt(RET, SECCOMP_RET_ALLOW));
    f
}
