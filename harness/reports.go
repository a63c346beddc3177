package harness

import "github.com/edgefault/edgefault/reports"

// The result types live in package reports; these names keep the
// harness's API whole for callers (edgetest, the CLI, users' suites).
type (
	Report         = reports.Report
	ScenarioResult = reports.ScenarioResult
	Window         = reports.Window
	NodeSeries     = reports.NodeSeries
	Sample         = reports.Sample
)
