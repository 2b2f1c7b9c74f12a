package server

import (
	"fmt"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/pushbench/pushbench/servers/answer"
)

// answerPanel mirrors window.pushbenchAnswer, the answer panel's state.
type answerPanel struct {
	Transport  string   `json:"transport"`
	State      string   `json:"state"`
	ID         string   `json:"id"`
	Seed       uint64   `json:"seed"`
	Tokens     int      `json:"tokens"`
	Chunks     int      `json:"chunks"`
	Text       string   `json:"text"`
	TTFT       *float64 `json:"ttft"`
	TPS        *float64 `json:"tps"`
	OutOfOrder int      `json:"outOfOrder"`
	Error      string   `json:"error"`
	Runs       int      `json:"runs"`
}

// TestAnswerPanelInBrowser asks the demo page's answer panel a question
// over each transport in headless Chromium, typed and clicked as a user
// would, twice: the reply streams in whole and in order, its text is the
// deterministic answer of the page's seed (the same question gives the same
// text on every transport), and TTFT and tokens/s are shown.
func TestAnswerPanelInBrowser(t *testing.T) {
	exe := requireChromium(t)
	browser := startBrowser(t, exe)
	a := startDemoServer(t, "127.0.0.1:0", Config{Transport: "all", Feed: demoFeed})
	texts := map[string]string{}
	for _, tr := range []string{"sse", "ws", "poll"} {
		t.Run(tr, func(t *testing.T) {
			tab, closeTab := chromedp.NewContext(browser)
			exceptions := watchExceptions(t, tab)
			defer func() {
				closeTab()
				for _, e := range exceptions() {
					t.Errorf("page exception: %s", e)
				}
			}()
			do(t, tab, chromedp.Navigate("http://"+a.addr+"/?transport="+tr))
			for round := 1; round <= 2; round++ {
				do(t, tab, chromedp.SetValue("#answer-input", "what is pushbench?"),
					chromedp.Click("#answer-ask"))
				var p answerPanel
				eventually(t, tab, waitLimit, "the answer streams in", func() (bool, string) {
					var err error
					if p, err = run(tab, chromedp.Evaluate[answerPanel](`window.pushbenchAnswer`)); err != nil {
						t.Fatalf("read window.pushbenchAnswer: %v", err)
					}
					return p.Runs == round || p.State == "error", fmt.Sprintf("%+v", p)
				})
				if p.State != "done" || p.Transport != tr || p.Chunks != p.Tokens || p.OutOfOrder != 0 || p.ID == "" {
					t.Fatalf("round %d: %+v, want done over %s with every chunk in order", round, p, tr)
				}
				var want strings.Builder
				for k := range p.Tokens {
					want.WriteString(answer.Text(p.Seed, k))
				}
				if p.Text != want.String() {
					t.Errorf("round %d: text %q, want the answer of seed %d: %q", round, p.Text, p.Seed, want.String())
				}
				if p.TTFT == nil || *p.TTFT <= 0 || p.TPS == nil || *p.TPS <= 0 {
					t.Errorf("round %d: TTFT %v, tokens/s %v: want both measured", round, p.TTFT, p.TPS)
				}
				shown, err := run(tab, chromedp.Evaluate[[]string](`['answer-text','answer-ttft','answer-tps','answer-count','answer-via'].map((id) => document.getElementById(id).textContent)`))
				if err != nil {
					t.Fatal(err)
				}
				if shown[0] != p.Text || !numberText.MatchString(shown[1]) || !numberText.MatchString(shown[2]) ||
					shown[3] != fmt.Sprintf("%d / %d", p.Tokens, p.Tokens) || shown[4] != tr {
					t.Errorf("round %d: the panel shows %q", round, shown)
				}
				texts[tr] = p.Text
			}
		})
	}
	if texts["sse"] == "" || texts["sse"] != texts["ws"] || texts["ws"] != texts["poll"] {
		t.Errorf("the same question got different answers: %q", texts)
	}
}
