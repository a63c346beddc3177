package harness

import (
	"context"
	"fmt"
	"time"

	"github.com/edgefault/edgefault/scenarios"
)

// Certify plays the scenarios one after the other, each on its own fresh
// fleet, and writes the report (JUnit XML, JSON, HTML) to o.Reports. The
// report's Pass is true only if every scenario passed. Scenarios a
// provider cannot model are refused before anything starts.
func Certify(ctx context.Context, scs []*scenarios.Scenario, o RunOptions) (*Report, []string, error) {
	if err := o.defaults(); err != nil {
		return nil, nil, err
	}
	for _, sc := range scs {
		if err := Supports(o.Provider.Info(), sc); err != nil {
			return nil, nil, err
		}
		if err := CheckTiming(sc, sc.Scale(o.TimeScale)); err != nil {
			return nil, nil, err
		}
	}
	rep := &Report{Started: time.Now().UTC(), Provider: o.Provider.Name(), Pass: len(scs) > 0}
	for i, sc := range scs {
		o.Log.Info(fmt.Sprintf("scenario %d of %d: %s", i+1, len(scs), sc.Metadata.Name), "source", sc.Source)
		res := Run(ctx, sc, o)
		rep.Scenarios = append(rep.Scenarios, res)
		rep.Pass = rep.Pass && res.Pass
		verdict := "PASS"
		if !res.Pass {
			verdict = "FAIL"
		}
		o.Log.Info(fmt.Sprintf("scenario %s: %s", sc.Metadata.Name, verdict), "wall", res.Duration.Round(100*time.Millisecond), "timeline", res.Timeline)
		if ctx.Err() != nil {
			break
		}
	}
	rep.Duration = time.Since(rep.Started)
	files, err := rep.Write(o.Reports)
	return rep, files, err
}
