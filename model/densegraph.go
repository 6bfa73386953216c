package model

import (
	"encoding/binary"
	"fmt"
)

// On CPUs lmfs does not run a model file's stored ONNX graph: it builds a smaller, integer one
// from the file's tensors and computes the bag sum itself (bagsum.go). Measured on the default
// model, one thread of a Xeon with AVX-512 VNNI, per context row: the stored float graph 8.1 µs
// (its Gather/Cast/ReduceSum bag 4.7 µs, the float MatMuls the rest); the dense layers as
// MatMulInteger 1.4 µs against 4.3 µs as float MatMuls. The stored graph stays the format's
// reference and is what CUDA runs (ONNX Runtime's CUDA MatMulInteger takes int8 activations
// only).
//
// The integer graph, for H0 activations h0 (uint8, 0..127, computed in Go) and N dense layers:
//
//	for i = 1..N:  a_i = MatMulInteger(h_{i-1}, w_i) + b_i                    (int32, exact)
//	  i < N:       h_i = Cast<uint8>(Div(Clip(a_i, 0, 128*2^s_i - 1), 2^s_i))  (= clamp(a_i >> s_i, 0, 127))
//	  i = N:       logits = Clip(Div(a_N + 2^30, 2^s_N) - 2^(30-s_N), -L, L)         (int32)
//
// Div of a non-negative int32 truncates, which is floor; the last layer is shifted up by 2^30
// (|a_N| < 2^24) to be non-negative. uint8 x int8 products stay exact on every kernel: pairs
// of them sum to at most 2*127*127 < 2^15, so even the AVX2 kernel's 16-bit pair sums cannot
// saturate. The self-test checks the result against the Go evaluator like any graph.

// Test hooks: testStoredGraph makes CPU sessions run the stored graph (as CUDA ones do), and
// testDenseBias is added to the last layer's bias 17 in the integer graph (a graph that
// disagrees with the Go evaluator, which the self-test must refuse).
var (
	testStoredGraph bool
	testDenseBias   int32
)

// maxIntShift bounds the shifts the integer graph can express in int32 (128*2^s - 1 and
// 2^30 >> s must fit).
const maxIntShift = 23

// intGraphOK reports whether m's dense layers fit the integer graph.
func (m *Model) intGraphOK() bool {
	for _, l := range m.layers {
		if l.shift > maxIntShift {
			return false
		}
	}
	return true
}

const attrInt = 2 // AttributeProto.INT (onnx.proto)

type graphBuilder struct {
	nodes, inits []byte
}

func (g *graphBuilder) node(op string, out string, attrs map[string]int64, ins ...string) string {
	var n []byte
	for _, in := range ins {
		n = appendBytesField(n, 1, []byte(in))
	}
	n = appendBytesField(n, 2, []byte(out))
	n = appendBytesField(n, 3, []byte(out)) // node name = its output
	n = appendBytesField(n, 4, []byte(op))
	for name, v := range attrs {
		var a []byte
		a = appendBytesField(a, 1, []byte(name))
		a = appendVarintField(a, 3, uint64(v))
		a = appendVarintField(a, 20, attrInt)
		n = appendBytesField(n, 5, a)
	}
	g.nodes = appendBytesField(g.nodes, 1, n)
	return out
}

func (g *graphBuilder) tensor(name string, dtype uint64, dims []int64, raw []byte) string {
	g.inits = appendInitializer(g.inits, name, dtype, dims, raw)
	return name
}

func (g *graphBuilder) scalar(name string, v int32) string {
	return g.tensor(name, onnxInt32, nil, binary.LittleEndian.AppendUint32(nil, uint32(v)))
}

func int8Bytes(v []int8) []byte {
	b := make([]byte, len(v))
	for i, x := range v {
		b[i] = byte(x)
	}
	return b
}

func int32Bytes(v []int32) []byte {
	b := make([]byte, 0, 4*len(v))
	for _, x := range v {
		b = binary.LittleEndian.AppendUint32(b, uint32(x))
	}
	return b
}

// valueInfo is a ValueInfoProto of a [batch, width] tensor.
func valueInfo(name string, elem uint64, width int) []byte {
	var shape []byte
	shape = appendBytesField(shape, 1, appendBytesField(nil, 2, []byte("batch"))) // dim_param
	shape = appendBytesField(shape, 1, appendVarintField(nil, 1, uint64(width)))  // dim_value
	var tt []byte
	tt = appendVarintField(tt, 1, elem)
	tt = appendBytesField(tt, 2, shape)
	var v []byte
	v = appendBytesField(v, 1, []byte(name))
	v = appendBytesField(v, 2, appendBytesField(nil, 1, tt)) // TypeProto.tensor_type
	return v
}

// denseGraph returns the serialized ModelProto of the integer dense graph: input "h0" uint8
// [batch, H0], output "logits" float [batch, 256].
func (m *Model) denseGraph() ([]byte, error) {
	if !m.intGraphOK() {
		return nil, fmt.Errorf("a shift above %d", maxIntShift)
	}
	g := &graphBuilder{}
	h := "h0"
	last := len(m.layers) - 1
	for i := range m.layers {
		l := &m.layers[i]
		w := g.tensor(fmt.Sprintf("w%d", i+1), onnxInt8, []int64{int64(l.in), int64(l.out)}, int8Bytes(l.w))
		bias := l.b
		if i == last && testDenseBias != 0 {
			bias = append([]int32(nil), bias...)
			bias[17] += testDenseBias
		}
		b := g.tensor(fmt.Sprintf("b%d", i+1), onnxInt32, []int64{int64(l.out)}, int32Bytes(bias))
		mm := g.node("MatMulInteger", fmt.Sprintf("mm%d", i+1), nil, h, w)
		a := g.node("Add", fmt.Sprintf("a%d", i+1), nil, mm, b)
		s := l.shift
		if i < last {
			c := g.node("Clip", fmt.Sprintf("c%d", i+1), nil, a, g.scalar(fmt.Sprintf("lo%d", i+1), 0),
				g.scalar(fmt.Sprintf("hi%d", i+1), int32(128<<s-1)))
			q := g.node("Div", fmt.Sprintf("q%d", i+1), nil, c, g.scalar(fmt.Sprintf("d%d", i+1), int32(1)<<s))
			h = g.node("Cast", fmt.Sprintf("h%d", i+1), map[string]int64{"to": onnxUint8}, q)
			continue
		}
		up := g.node("Add", "up", nil, a, g.scalar("off", 1<<30))
		q := g.node("Div", "qup", nil, up, g.scalar("dN", int32(1)<<s))
		q = g.node("Sub", "q", nil, q, g.scalar("offq", int32(1<<30>>s)))
		g.node("Clip", "logits", nil, q, g.scalar("lmin", -m.clip), g.scalar("lmax", m.clip))
	}
	var graph []byte
	graph = append(graph, g.nodes...)
	graph = appendBytesField(graph, 2, []byte("lmfs_dense_int"))
	graph = append(graph, g.inits...)
	graph = appendBytesField(graph, 11, valueInfo("h0", onnxUint8, m.h0))
	graph = appendBytesField(graph, 12, valueInfo("logits", onnxInt32, Outputs))
	var model []byte
	model = appendVarintField(model, 1, 8) // ir_version
	model = appendBytesField(model, 2, []byte("lmfs"))
	model = appendBytesField(model, 7, graph)
	model = appendBytesField(model, 8, appendVarintField(nil, 2, 17)) // opset_import: default domain, 17
	return model, nil
}
