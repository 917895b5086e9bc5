"""Generated gRPC/protobuf code for the wire contract in protos/smpc/v1/ (proto package
``smpc.v1``, hence this module path). Do not edit: run ``make proto``; a test fails when the
checked-in files differ from what protoc generates."""
