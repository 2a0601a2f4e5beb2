//! The console atlas writes to. A Windows console whose output code page is
//! not UTF-8 (65001) shows emoji as `?` or boxes, so there atlas's lines go
//! without them, as with `--plain`. Accents are safe either way: Rust's std
//! hands a console UTF-16 (`WriteConsoleW`), whatever its code page, and a
//! pipe or a file gets UTF-8.

/// Whether the console's code page cannot show emoji (never off Windows, nor
/// without a console: output to a pipe or a file is UTF-8).
pub fn cannot_show_emoji() -> bool {
    imp::legacy_code_page()
}

#[cfg(windows)]
mod imp {
    /// The UTF-8 code page (`chcp 65001`).
    const CP_UTF8: u32 = 65001;

    #[link(name = "kernel32")]
    extern "system" {
        fn GetConsoleOutputCP() -> u32;
    }

    pub fn legacy_code_page() -> bool {
        // SAFETY: no arguments and no memory; it returns 0 when the process
        // has no console.
        let cp = unsafe { GetConsoleOutputCP() };
        cp != 0 && cp != CP_UTF8
    }
}

#[cfg(not(windows))]
mod imp {
    pub fn legacy_code_page() -> bool {
        false
    }
}
