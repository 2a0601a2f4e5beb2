/*
 * bcryptprimitives.dll for Wine 8.0 (Debian 12), test use only.
 *
 * Rust's std (1.78 on) takes its random numbers from ProcessPrng in
 * bcryptprimitives.dll, which every Windows 10 and later has; Wine added it
 * in 8.13, so under Debian 12's Wine any Rust exe fails to start with
 * "Library bcryptprimitives.dll ... not found" (status c0000135).
 * scripts/test-windows.sh builds this stand-in with MinGW into its own Wine
 * prefix (never into the zip): ProcessPrng through BCryptGenRandom, the
 * system RNG that Wine 8.0 has.
 */
#include <windows.h>
#include <bcrypt.h>

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    while (len > 0) {
        ULONG n = len > 0x40000000 ? 0x40000000 : (ULONG)len;
        if (!BCRYPT_SUCCESS(BCryptGenRandom(NULL, data, n, BCRYPT_USE_SYSTEM_PREFERRED_RNG)))
            return FALSE;
        data += n;
        len -= n;
    }
    return TRUE;
}
