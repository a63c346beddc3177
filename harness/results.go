package harness

import "github.com/edgefault/edgefault/harness/report"

// The result types live in package harness/report; these names keep the
// harness's API whole for callers (edgetest, the CLI, users' suites).
type (
	Report         = report.Report
	ScenarioResult = report.ScenarioResult
	Window         = report.Window
	NodeSeries     = report.NodeSeries
	Sample         = report.Sample
	SiteRun        = report.SiteRun
)
