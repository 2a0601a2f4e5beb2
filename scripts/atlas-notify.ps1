<#
.SYNOPSIS
  A notify command for atlas on Windows: reads the run's --json object from
  stdin (UTF-8) and sends it on by e-mail (Send-MailMessage) or to a chat
  webhook (Invoke-RestMethod). atlas runs it at the end of a run that the
  notify block's "on" wants, cuts it after timeout_secs, and only logs its
  failure: it never changes atlas's exit code.

.EXAMPLE
  In atlas.json (e-mail):
    "notify": {
      "on": ["failure"],
      "command": ["powershell.exe", "-NoProfile", "-ExecutionPolicy", "Bypass",
                  "-File", "C:\\atlas\\atlas-notify.ps1",
                  "-SmtpServer", "smtp.empresa.com.br",
                  "-From", "atlas@empresa.com.br", "-To", "ti@empresa.com.br"],
      "timeout_secs": 30
    }

.EXAMPLE
  In atlas.json (a Teams, Slack or Mattermost incoming webhook whose URL is
  in the machine environment variable ATLAS_TEAMS_URL, set with
  setx /M ATLAS_TEAMS_URL "https://..."):
    "command": ["powershell.exe", "-NoProfile", "-ExecutionPolicy", "Bypass",
                "-File", "C:\\atlas\\atlas-notify.ps1", "-WebhookUrlEnv", "ATLAS_TEAMS_URL"]
  (atlas's own "webhook_url_env" does the same without PowerShell.)
#>
param(
    [string] $SmtpServer,
    [string] $From,
    [string[]] $To,
    [int] $Port = 25,
    [switch] $UseSsl,
    [string] $WebhookUrlEnv
)
$ErrorActionPreference = "Stop"

# stdin as UTF-8, whatever the console's code page.
$reader = New-Object System.IO.StreamReader([Console]::OpenStandardInput(), [System.Text.Encoding]::UTF8)
$json = $reader.ReadToEnd()
$run = $json | ConvertFrom-Json

# One line: the fleet's pairs with a problem, or the one pair's outcome.
if ($run.pairs) {
    $bad = @($run.pairs | Where-Object { $_.exit_code -ne 0 } | ForEach-Object { "$($_.client) / $($_.route) ($($_.status))" })
    $line = "atlas sync --all em $($env:COMPUTERNAME): $($bad.Count) de $($run.pairs.Count) par(es) com problema: $($bad -join ', ')"
} elseif ($run.status -eq "error") {
    $line = "atlas em $($env:COMPUTERNAME): erro (exit $($run.exit_code)): $($run.error)"
} else {
    $line = "atlas em $($env:COMPUTERNAME): $($run.client) / $($run.route) $($run.status) (exit $($run.exit_code))"
}

if ($WebhookUrlEnv) {
    $url = [Environment]::GetEnvironmentVariable($WebhookUrlEnv)
    if (-not $url) { throw "$WebhookUrlEnv is not set" }
    $body = @{ text = $line; atlas = $run } | ConvertTo-Json -Depth 20 -Compress
    Invoke-RestMethod -Method Post -Uri $url -ContentType "application/json; charset=utf-8" `
        -Body ([System.Text.Encoding]::UTF8.GetBytes($body)) -TimeoutSec 20 | Out-Null
}
if ($SmtpServer) {
    Send-MailMessage -SmtpServer $SmtpServer -Port $Port -UseSsl:$UseSsl -From $From -To $To `
        -Subject $line -Body $json -Encoding UTF8
}
