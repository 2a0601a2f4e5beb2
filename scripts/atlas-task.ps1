<#
.SYNOPSIS
  Registers a daily Windows Task Scheduler task that runs `atlas sync --all`
  (every (client, route) of atlas.json) with the working directory set,
  output appended to logs\sync-YYYY-MM-DD.log, and atlas's exit code kept
  as the task's result.

.EXAMPLE
  powershell -ExecutionPolicy Bypass -File scripts\atlas-task.ps1 `
      -AtlasExe C:\atlas\atlas.exe -WorkDir C:\atlas -At 02:15

.NOTES
  Secrets are read from environment variables named in atlas.json
  (token_env, value_env, password_env): set them as machine or user
  environment variables for the account that runs the task
  ([Environment]::SetEnvironmentVariable('ATLAS_TOKEN_2151', '...', 'User')).
  Exit codes of atlas: 0 ok or nothing new, 1 a pair failed or could not
  start (the next night resumes it), 2 bad config or input, 3 database lost.
  To split the fleet over machines, register the same task on each one.
#>
param(
    [Parameter(Mandatory = $true)] [string] $AtlasExe,
    [Parameter(Mandatory = $true)] [string] $WorkDir,
    [string] $Config = "atlas.json",
    [string] $At = "02:15",
    [string] $TaskName = "Atlas Data Flow sync",
    [string] $LogDir = "logs"
)
$ErrorActionPreference = "Stop"

$configPath = Join-Path $WorkDir $Config
if (-not (Test-Path $AtlasExe)) { throw "atlas executable not found: $AtlasExe" }
if (-not (Test-Path $configPath)) { throw "config not found: $configPath" }
New-Item -ItemType Directory -Force -Path (Join-Path $WorkDir $LogDir) | Out-Null

# A small runner keeps the log per day and passes atlas's exit code on.
$runner = Join-Path $WorkDir "atlas-sync-all.ps1"
Set-Content -Path $runner -Encoding UTF8 -Value @(
    "Set-Location -Path `"$WorkDir`"",
    "& `"$AtlasExe`" --plain --config `"$configPath`" sync --all *>> `"$LogDir\sync-`$(Get-Date -Format yyyy-MM-dd).log`"",
    "exit `$LASTEXITCODE"
)

$action = New-ScheduledTaskAction -Execute "powershell.exe" `
    -Argument "-NoProfile -ExecutionPolicy Bypass -File `"$runner`"" -WorkingDirectory $WorkDir
$trigger = New-ScheduledTaskTrigger -Daily -At $At
$settings = New-ScheduledTaskSettingsSet -StartWhenAvailable -ExecutionTimeLimit (New-TimeSpan -Hours 12) `
    -MultipleInstances IgnoreNew
Register-ScheduledTask -TaskName $TaskName -Action $action -Trigger $trigger -Settings $settings -Force | Out-Null
Write-Host "Registered '$TaskName' daily at ${At}: atlas sync --all, script $runner, logs in $WorkDir\$LogDir"
