package model

import "encoding/binary"

// Format 3 stores the bag once. Formats 1 and 2 hold it twice: as the tensor the Go evaluator
// reads and as an initializer inside the ONNX graph (10.5 of the default model's 21.4 MB). A
// format-3 graph leaves out the initializers the header's onnx.shared lists, and ONNX() puts
// them back from the file's tensors before ONNX Runtime sees the graph.
//
// It relies on the protobuf wire format, not on a protobuf library: a message may be sent in
// pieces, and a parser merges a singular message field that occurs twice (ModelProto.graph)
// and appends to a repeated one (GraphProto.initializer). So ONNX() appends one more
// ModelProto.graph field holding only the shared initializers, each a TensorProto with its
// name, dims, data type and raw data (little endian, as ONNX's raw_data is). The exporter
// checks that the stored graph plus this suffix parses to the graph it built (export.py), and
// lmfs checks ONNX Runtime's results against the Go evaluator before using it (ort.go).

// ONNX TensorProto.DataType values.
const (
	onnxUint8  = 2
	onnxInt8   = 3
	onnxInt32  = 6
	onnxUint32 = 12
)

// onnxDType maps file dtypes to ONNX TensorProto.DataType values.
var onnxDType = map[string]uint64{"int8": onnxInt8, "int32": onnxInt32, "uint32": onnxUint32}

type sharedTensor struct {
	name  string
	shape []int64
	dtype uint64
	data  []byte
}

// Field numbers of onnx.proto.
const (
	fieldModelGraph       = 7 // ModelProto.graph
	fieldGraphInitializer = 5 // GraphProto.initializer
	fieldTensorDims       = 1 // TensorProto.dims (repeated int64)
	fieldTensorDataType   = 2 // TensorProto.data_type
	fieldTensorName       = 8 // TensorProto.name
	fieldTensorRawData    = 9 // TensorProto.raw_data
)

// appendShared returns a copy of graph (a serialized ModelProto) with the shared tensors
// appended as initializers.
func appendShared(graph []byte, shared []sharedTensor) []byte {
	var g []byte
	for _, t := range shared {
		g = appendInitializer(g, t.name, t.dtype, t.shape, t.data)
	}
	out := make([]byte, 0, len(graph)+len(g)+16)
	out = append(out, graph...)
	return appendBytesField(out, fieldModelGraph, g)
}

// appendInitializer appends a GraphProto.initializer field: a TensorProto with its dims,
// data type, name and raw data (little endian).
func appendInitializer(g []byte, name string, dtype uint64, dims []int64, raw []byte) []byte {
	var tp []byte
	for _, d := range dims {
		tp = appendVarintField(tp, fieldTensorDims, uint64(d))
	}
	tp = appendVarintField(tp, fieldTensorDataType, dtype)
	tp = appendBytesField(tp, fieldTensorName, []byte(name))
	tp = appendBytesField(tp, fieldTensorRawData, raw)
	return appendBytesField(g, fieldGraphInitializer, tp)
}

func appendVarintField(b []byte, field int, v uint64) []byte {
	b = binary.AppendUvarint(b, uint64(field)<<3) // wire type 0: varint
	return binary.AppendUvarint(b, v)
}

func appendBytesField(b []byte, field int, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(field)<<3|2) // wire type 2: length-delimited
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}
