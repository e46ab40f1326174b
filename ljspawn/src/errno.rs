//! The text of each `errno`, as glibc words it. ljspawn's messages quote it ("cannot bind X:
//! permission denied"), callers and tests match it, and the installed ljspawn is linked
//! against musl, whose wording differs for about half of them ("not supported" for
//! "operation not supported"): messages stay the same whichever libc ljspawn is built with.

/// `strerror(n)` of glibc 2.36, for n in 1..=133 (index n - 1).
const TEXT: [&str; 133] = [
    "Operation not permitted",
    "No such file or directory",
    "No such process",
    "Interrupted system call",
    "Input/output error",
    "No such device or address",
    "Argument list too long",
    "Exec format error",
    "Bad file descriptor",
    "No child processes",
    "Resource temporarily unavailable",
    "Cannot allocate memory",
    "Permission denied",
    "Bad address",
    "Block device required",
    "Device or resource busy",
    "File exists",
    "Invalid cross-device link",
    "No such device",
    "Not a directory",
    "Is a directory",
    "Invalid argument",
    "Too many open files in system",
    "Too many open files",
    "Inappropriate ioctl for device",
    "Text file busy",
    "File too large",
    "No space left on device",
    "Illegal seek",
    "Read-only file system",
    "Too many links",
    "Broken pipe",
    "Numerical argument out of domain",
    "Numerical result out of range",
    "Resource deadlock avoided",
    "File name too long",
    "No locks available",
    "Function not implemented",
    "Directory not empty",
    "Too many levels of symbolic links",
    "",
    "No message of desired type",
    "Identifier removed",
    "Channel number out of range",
    "Level 2 not synchronized",
    "Level 3 halted",
    "Level 3 reset",
    "Link number out of range",
    "Protocol driver not attached",
    "No CSI structure available",
    "Level 2 halted",
    "Invalid exchange",
    "Invalid request descriptor",
    "Exchange full",
    "No anode",
    "Invalid request code",
    "Invalid slot",
    "",
    "Bad font file format",
    "Device not a stream",
    "No data available",
    "Timer expired",
    "Out of streams resources",
    "Machine is not on the network",
    "Package not installed",
    "Object is remote",
    "Link has been severed",
    "Advertise error",
    "Srmount error",
    "Communication error on send",
    "Protocol error",
    "Multihop attempted",
    "RFS specific error",
    "Bad message",
    "Value too large for defined data type",
    "Name not unique on network",
    "File descriptor in bad state",
    "Remote address changed",
    "Can not access a needed shared library",
    "Accessing a corrupted shared library",
    ".lib section in a.out corrupted",
    "Attempting to link in too many shared libraries",
    "Cannot exec a shared library directly",
    "Invalid or incomplete multibyte or wide character",
    "Interrupted system call should be restarted",
    "Streams pipe error",
    "Too many users",
    "Socket operation on non-socket",
    "Destination address required",
    "Message too long",
    "Protocol wrong type for socket",
    "Protocol not available",
    "Protocol not supported",
    "Socket type not supported",
    "Operation not supported",
    "Protocol family not supported",
    "Address family not supported by protocol",
    "Address already in use",
    "Cannot assign requested address",
    "Network is down",
    "Network is unreachable",
    "Network dropped connection on reset",
    "Software caused connection abort",
    "Connection reset by peer",
    "No buffer space available",
    "Transport endpoint is already connected",
    "Transport endpoint is not connected",
    "Cannot send after transport endpoint shutdown",
    "Too many references: cannot splice",
    "Connection timed out",
    "Connection refused",
    "Host is down",
    "No route to host",
    "Operation already in progress",
    "Operation now in progress",
    "Stale file handle",
    "Structure needs cleaning",
    "Not a XENIX named type file",
    "No XENIX semaphores available",
    "Is a named type file",
    "Remote I/O error",
    "Disk quota exceeded",
    "No medium found",
    "Wrong medium type",
    "Operation canceled",
    "Required key not available",
    "Key has expired",
    "Key has been revoked",
    "Key was rejected by service",
    "Owner died",
    "State not recoverable",
    "Operation not possible due to RF-kill",
    "Memory page has hardware error",
];

/// glibc's text of `errno` `n`, if it has one.
pub(crate) fn text(n: i32) -> Option<&'static str> {
    let i = usize::try_from(n).ok()?.checked_sub(1)?;
    TEXT.get(i).copied().filter(|t| !t.is_empty())
}

/// glibc's text (as `strerror` words it) whose lower case is `lower`, as `describe` gives it.
pub(crate) fn from_lower(lower: &str) -> Option<&'static str> {
    TEXT.iter().copied().find(|t| !t.is_empty() && t.to_lowercase() == lower)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glibc_wording() {
        assert_eq!(text(libc::ENOENT), Some("No such file or directory"));
        assert_eq!(text(libc::EOPNOTSUPP), Some("Operation not supported"));
        assert_eq!(text(libc::ELOOP), Some("Too many levels of symbolic links"));
        assert_eq!(text(libc::EBUSY), Some("Device or resource busy"));
        assert_eq!(text(libc::EHWPOISON), Some("Memory page has hardware error"));
        assert_eq!(text(0), None);
        assert_eq!(text(41), None);
        assert_eq!(text(134), None);
        assert_eq!(from_lower("no such file or directory"), Some("No such file or directory"));
        assert_eq!(from_lower("no such thing"), None);
    }
}
