<#
.SYNOPSIS
  Registers a daily Windows Task Scheduler task that runs `atlas sync --all`
  (every (client, route) of atlas.json): the same task as atlas-task.xml
  (schtasks /Create /XML, no PowerShell needed), with the paths and the
  time as parameters. In the working directory, cmd.exe appends atlas's
  output (UTF-8, as atlas wrote it) to logs\sync-DATE.log and ends with
  atlas, so atlas's exit code is the task's Last Run Result. It runs as the
  current user whether logged on or not (S4U, no password stored), at the
  next chance when the machine was off, never twice at once, at most 12 h.

.EXAMPLE
  powershell -ExecutionPolicy Bypass -File C:\atlas\atlas-task.ps1 `
      -AtlasExe C:\atlas\atlas.exe -WorkDir C:\atlas -At 02:15

.NOTES
  Run it as an administrator (S4U tasks need it). Secrets are read from
  environment variables named in atlas.json (token_env, value_env,
  password_env): set them as machine environment variables
  (setx /M ATLAS_TOKEN_2151 ...), or use *_file secrets.
  Exit codes of atlas: 0 ok or nothing new, 1 a pair failed or could not
  start (the next night resumes it), 2 bad config or input, 3 database lost.
  To split the fleet over machines, register the same task on each one.
#>
param(
    [Parameter(Mandatory = $true)] [string] $AtlasExe,
    [Parameter(Mandatory = $true)] [string] $WorkDir,
    [string] $Config = "atlas.json",
    [string] $At = "02:15",
    [string] $TaskName = "Atlas Sync",
    [string] $LogDir = "logs"
)
$ErrorActionPreference = "Stop"

$configPath = Join-Path $WorkDir $Config
if (-not (Test-Path $AtlasExe)) { throw "atlas executable not found: $AtlasExe" }
if (-not (Test-Path $configPath)) { throw "config not found: $configPath" }
New-Item -ItemType Directory -Force -Path (Join-Path $WorkDir $LogDir) | Out-Null

# The action of atlas-task.xml. cmd.exe, not PowerShell, redirects: it keeps
# atlas's UTF-8 bytes (PowerShell 5.1 would re-encode them) and its exit code.
# `if` in parentheses: cmd.exe would take every `&` after it into its body.
$cmdArgs = "/d /c `"(if not exist `"$LogDir`" mkdir `"$LogDir`") & `"$AtlasExe`" --plain --config `"$configPath`" sync --all >> `"$LogDir\sync-%DATE:/=-%.log`" 2>&1`""

$action = New-ScheduledTaskAction -Execute "$env:SystemRoot\System32\cmd.exe" `
    -Argument $cmdArgs -WorkingDirectory $WorkDir
$trigger = New-ScheduledTaskTrigger -Daily -At $At -RandomDelay (New-TimeSpan -Minutes 10)
$settings = New-ScheduledTaskSettingsSet -StartWhenAvailable -ExecutionTimeLimit (New-TimeSpan -Hours 12) `
    -MultipleInstances IgnoreNew -AllowStartIfOnBatteries -DontStopIfGoingOnBatteries
$principal = New-ScheduledTaskPrincipal -UserId ([Security.Principal.WindowsIdentity]::GetCurrent().Name) `
    -LogonType S4U -RunLevel Limited
Register-ScheduledTask -TaskName $TaskName -Action $action -Trigger $trigger -Settings $settings `
    -Principal $principal -Force | Out-Null
Write-Host "Registered '$TaskName' daily at ${At}: atlas sync --all in $WorkDir, logs in $WorkDir\$LogDir"
