// kubectl-reader reads manifests exactly as `kubectl apply -f` does and prints what it read, for
// deputy-yaml's differential test (yaml/tests/differential.rs). kubectl's file visitor decodes a
// stream with k8s.io/apimachinery's NewYAMLOrJSONDecoder (JSON when it starts with `{`, falling
// back to YAML on a JSON syntax error; YAML split into documents at `---` lines by its
// YAMLReader, each converted by sigs.k8s.io/yaml, go-yaml v2's YAML 1.1) and skips empty
// documents.
//
// Protocol: stdin carries cases, each a decimal byte count, a newline and that many bytes; for
// each case stdout gets one line of JSON: {"docs":[...]} or {"error":"..."}.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/yaml"
)

type result struct {
	Docs  []json.RawMessage `json:"docs,omitempty"`
	Error string            `json:"error,omitempty"`
}

// read decodes one manifest stream as kubectl's StreamVisitor does.
func read(data []byte) result {
	decoder := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	docs := []json.RawMessage{}
	for {
		var raw json.RawMessage
		err := decoder.Decode(&raw)
		if errors.Is(err, io.EOF) {
			return result{Docs: docs}
		}
		if err != nil {
			return result{Error: err.Error()}
		}
		if len(raw) == 0 || string(raw) == "null" {
			continue
		}
		docs = append(docs, raw)
	}
}

func main() {
	in := bufio.NewReader(os.Stdin)
	out := bufio.NewWriter(os.Stdout)
	for {
		header, err := in.ReadString('\n')
		if errors.Is(err, io.EOF) && header == "" {
			return
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "kubectl-reader: reading a header:", err)
			os.Exit(2)
		}
		n, err := strconv.Atoi(strings.TrimSpace(header))
		if err != nil || n < 0 {
			fmt.Fprintf(os.Stderr, "kubectl-reader: bad header %q\n", header)
			os.Exit(2)
		}
		data := make([]byte, n)
		if _, err := io.ReadFull(in, data); err != nil {
			fmt.Fprintln(os.Stderr, "kubectl-reader: reading a case:", err)
			os.Exit(2)
		}
		line, err := json.Marshal(read(data))
		if err != nil {
			fmt.Fprintln(os.Stderr, "kubectl-reader: encoding a result:", err)
			os.Exit(2)
		}
		out.Write(line)
		out.WriteByte('\n')
		out.Flush()
	}
}
