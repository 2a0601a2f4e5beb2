/*
 * Runs a Task Scheduler Exec action as the scheduler does, for
 * scripts/test-windows.sh under Wine: CreateProcess with the action's
 * Command (environment variables expanded), the command line
 * "Command Arguments" and its WorkingDirectory, read from the variables
 * TASK_COMMAND, TASK_ARGUMENTS and TASK_WORKDIR (so no shell re-quotes
 * them); exits with the action's exit code, the task's Last Run Result.
 */
#include <windows.h>
#include <stdio.h>
#include <wchar.h>

#define N 32768

static wchar_t command[N], path[N], arguments[N], workdir[N], line[2 * N + 4];

int main(void)
{
    STARTUPINFOW si;
    PROCESS_INFORMATION pi;
    DWORD code = 1;

    if (!GetEnvironmentVariableW(L"TASK_COMMAND", command, N)
        || !GetEnvironmentVariableW(L"TASK_ARGUMENTS", arguments, N)
        || !GetEnvironmentVariableW(L"TASK_WORKDIR", workdir, N)) {
        fputs("runtask: set TASK_COMMAND, TASK_ARGUMENTS and TASK_WORKDIR\n", stderr);
        return 120;
    }
    if (!ExpandEnvironmentStringsW(command, path, N)) {
        fputs("runtask: cannot expand TASK_COMMAND\n", stderr);
        return 120;
    }
    wcscpy(line, L"\"");
    wcscat(line, path);
    wcscat(line, L"\" ");
    wcscat(line, arguments);
    ZeroMemory(&si, sizeof si);
    si.cb = sizeof si;
    if (!CreateProcessW(path, line, NULL, NULL, TRUE, 0, NULL, workdir, &si, &pi)) {
        fprintf(stderr, "runtask: CreateProcess failed (error %lu)\n", GetLastError());
        return 121;
    }
    WaitForSingleObject(pi.hProcess, INFINITE);
    GetExitCodeProcess(pi.hProcess, &code);
    CloseHandle(pi.hThread);
    CloseHandle(pi.hProcess);
    return (int)code;
}
