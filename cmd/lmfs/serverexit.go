package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
)

// serverFailure says why a background mount server exited without reporting its mount ready
// or its error on the ready pipe: it crashed (a panic where no recover reaches, such as one of
// Badger's goroutines; a fatal runtime error; a signal). The reason is in its log, which the
// user should not have to dig out: the first line of the panic or fatal error, else the last
// error the server logged, else its last line. from is where the server's output starts in
// the log.
func serverFailure(logPath string, from int64, state *os.ProcessState) error {
	status := "it exited"
	if state != nil {
		status = "it " + state.String() // "exit status 2", "signal: killed"
	}
	reason := lastReason(logPath, from)
	if reason == "" {
		return fmt.Errorf("mount server failed before mounting (%s); see %s", status, logPath)
	}
	return fmt.Errorf("mount server failed before mounting: %s (%s; the full report is in %s)", reason, status, logPath)
}

// logDate is the prefix of the standard log package's lines (log.Fatal in a library).
var logDate = regexp.MustCompile(`^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d(\.\d+)? `)

// maxLogTail bounds what serverFailure reads of the log (a stack trace is a few hundred KiB
// at most; the reason comes before it).
const maxLogTail = 4 << 20

// lastReason picks the reason out of the server's output in the log from offset from.
func lastReason(logPath string, from int64) string {
	f, err := os.Open(logPath)
	if err != nil {
		return ""
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size()-from > maxLogTail {
		from = st.Size() - maxLogTail
	}
	if _, err := f.Seek(from, io.SeekStart); err != nil {
		return ""
	}
	var crash, lastErr, last string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "":
			continue
		case crash == "" && (strings.HasPrefix(line, "panic: ") || strings.HasPrefix(line, "fatal error: ")):
			crash = strings.TrimSuffix(line, " [recovered]")
		case strings.Contains(line, "level=ERROR"):
			lastErr = slogMessage(line)
		case logDate.MatchString(line):
			lastErr = logDate.ReplaceAllString(line, "") // the log package's: log.Fatal
		}
		if !isStackLine(sc.Bytes()) {
			last = line
		}
	}
	switch {
	case crash != "":
		return crash
	case lastErr != "":
		return lastErr
	}
	return last
}

// isStackLine reports whether a line belongs to a Go stack trace (goroutine headers, frames,
// file positions), which says nothing a user can act on.
func isStackLine(b []byte) bool {
	if len(b) > 0 && (b[0] == '\t' || b[0] == ' ') || bytes.HasPrefix(b, []byte("goroutine ")) || bytes.HasPrefix(b, []byte("created by ")) {
		return true
	}
	// A frame: "pkg.(*T).f(0x1, {0x2, ...})", no space before its argument list.
	i := bytes.IndexByte(b, '(')
	return i > 0 && bytes.HasSuffix(b, []byte(")")) && !bytes.Contains(b[:i], []byte(" "))
}

// slogMessage returns the msg and err of a text-handler log line, or the line.
func slogMessage(line string) string {
	msg, err := slogField(line, "msg"), slogField(line, "err")
	switch {
	case msg == "":
		return line
	case err != "":
		return msg + ": " + err
	}
	return msg
}

// slogField returns the value of key in a slog text line (quoted values unquoted).
func slogField(line, key string) string {
	i := strings.Index(line, " "+key+"=")
	if i < 0 {
		return ""
	}
	v := line[i+len(key)+2:]
	if strings.HasPrefix(v, `"`) {
		var out strings.Builder
		for j := 1; j < len(v); j++ {
			switch v[j] {
			case '\\':
				if j+1 < len(v) {
					j++
					out.WriteByte(v[j])
				}
			case '"':
				return out.String()
			default:
				out.WriteByte(v[j])
			}
		}
		return out.String()
	}
	if j := strings.IndexByte(v, ' '); j >= 0 {
		return v[:j]
	}
	return v
}
