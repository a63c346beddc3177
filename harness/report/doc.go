// Package report is what a certification run leaves for people and CI:
// the result of each scenario (its verdicts, the impairment windows and
// the runtime's sampled state) written as report.json, junit.xml and a
// self-contained report.html, whose page template is page.html.tmpl.
//
// The harness fills a Report as it plays scenarios; nothing here runs a
// fleet, so a report can be rendered again from its JSON.
package report
