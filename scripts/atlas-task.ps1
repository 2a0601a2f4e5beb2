<#
.SYNOPSIS
  Registers a daily Windows Task Scheduler task that runs `atlas sync` for
  every (client, route) in atlas.json, with the working directory and a log
  file set.

.EXAMPLE
  powershell -ExecutionPolicy Bypass -File scripts\atlas-task.ps1 `
      -AtlasExe C:\atlas\atlas.exe -WorkDir C:\atlas -At 02:15

.NOTES
  Secrets are read from environment variables named in atlas.json
  (token_env, value_env, password_env): set them as machine or user
  environment variables for the account that runs the task
  ([Environment]::SetEnvironmentVariable('ATLAS_TOKEN_2151', '...', 'User')).
  Exit codes of atlas: 0 ok or nothing new, 1 failed slices (the next run
  resumes them), 2 bad config or input, 3 database or API credentials.
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
$cfg = Get-Content -Raw -Path $configPath | ConvertFrom-Json
New-Item -ItemType Directory -Force -Path (Join-Path $WorkDir $LogDir) | Out-Null

# One sync per (client, route): a client without a "routes" list gets every route.
$lines = @()
foreach ($client in $cfg.clients.PSObject.Properties) {
    $routes = if ($client.Value.routes) { $client.Value.routes } else { $cfg.routes.PSObject.Properties.Name }
    foreach ($route in $routes) {
        $lines += "& `"$AtlasExe`" --plain --config `"$configPath`" sync --client `"$($client.Name)`" --route `"$route`" *>> `"$LogDir\sync-`$(Get-Date -Format yyyy-MM-dd).log`""
        $lines += "if (`$LASTEXITCODE -gt `$worst) { `$worst = `$LASTEXITCODE }"
    }
}
if ($lines.Count -eq 0) { throw "no (client, route) pairs in $configPath" }

# The task runs a small script so each sync's exit code is kept and the worst is reported.
$runner = Join-Path $WorkDir "atlas-sync-all.ps1"
Set-Content -Path $runner -Encoding UTF8 -Value (@(
    "Set-Location -Path `"$WorkDir`"",
    "`$worst = 0"
) + $lines + @("exit `$worst"))

$action = New-ScheduledTaskAction -Execute "powershell.exe" `
    -Argument "-NoProfile -ExecutionPolicy Bypass -File `"$runner`"" -WorkingDirectory $WorkDir
$trigger = New-ScheduledTaskTrigger -Daily -At $At
$settings = New-ScheduledTaskSettingsSet -StartWhenAvailable -ExecutionTimeLimit (New-TimeSpan -Hours 12) `
    -MultipleInstances IgnoreNew
Register-ScheduledTask -TaskName $TaskName -Action $action -Trigger $trigger -Settings $settings -Force | Out-Null
Write-Host "Registered '$TaskName' daily at ${At}: $($lines.Count / 2) sync(s), script $runner, logs in $WorkDir\$LogDir"
