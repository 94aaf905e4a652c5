/* reflection.c - gRPC server reflection (v1 and v1alpha), so stock clients
 * (grpcurl, Postman, grpcio's reflection) can list and call every service
 * without the .proto files. The descriptors come from fd_api_index. The two
 * versions have the same messages on the wire; the v1 types are used for
 * both. */
#include <stdlib.h>
#include <string.h>
#include "grpc/reflection/v1/reflection.pb-c.h"
#include "grpc/reflection/v1alpha/reflection.pb-c.h"
#include "fd/api_index.h"
#include "health.h"

typedef Grpc__Reflection__V1__ServerReflectionRequest request_t;
typedef Grpc__Reflection__V1__ServerReflectionResponse response_t;

#define MAX_FILES 64

/* Collect file i and, before it, everything it imports. */
static size_t collect(int i, int *out, size_t n, bool *seen)
{
	const fd_api_file_t *f = fd_api_file(i);
	if (!f || i >= MAX_FILES * 4 || seen[i] || n >= MAX_FILES)
		return n;
	seen[i] = true;
	out[n++] = i;
	for (size_t d = 0; d < f->ndeps; d++)
		n = collect(f->deps[d], out, n, seen);
	return n;
}

static int answer(fd_call_t *call, const request_t *req)
{
	fd_health_t *h = fd_call_service(call);
	response_t resp = GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__INIT;
	Grpc__Reflection__V1__FileDescriptorResponse files =
		GRPC__REFLECTION__V1__FILE_DESCRIPTOR_RESPONSE__INIT;
	Grpc__Reflection__V1__ListServiceResponse list =
		GRPC__REFLECTION__V1__LIST_SERVICE_RESPONSE__INIT;
	Grpc__Reflection__V1__ErrorResponse error = GRPC__REFLECTION__V1__ERROR_RESPONSE__INIT;
	ProtobufCBinaryData blobs[MAX_FILES];
	resp.valid_host = req->host;
	resp.original_request = (request_t *)req;

	int file = -1;
	const char *what = NULL;
	switch (req->message_request_case) {
	case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES: {
		size_t n;
		char **names = fd_health_names(h, &n);
		Grpc__Reflection__V1__ServiceResponse *items = calloc(n ? n : 1, sizeof(*items));
		Grpc__Reflection__V1__ServiceResponse **ptrs = calloc(n ? n : 1, sizeof(*ptrs));
		for (size_t i = 0; items && ptrs && names && i < n; i++) {
			grpc__reflection__v1__service_response__init(&items[i]);
			items[i].name = names[i];
			ptrs[i] = &items[i];
		}
		size_t nnames = n;
		if (!items || !ptrs || !names)
			n = 0;
		list.n_service = n;
		list.service = ptrs;
		resp.message_response_case =
			GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_LIST_SERVICES_RESPONSE;
		resp.list_services_response = &list;
		int rc = fd_stream_send(call, &resp.base);
		for (size_t i = 0; names && i < nnames; i++)
			free(names[i]);
		free(names);
		free(ptrs);
		free(items);
		return rc == -FD_ECANCELLED ? 0 : rc;
	}
	case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_BY_FILENAME:
		what = req->file_by_filename;
		file = fd_api_file_by_name(what);
		break;
	case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL:
		what = req->file_containing_symbol;
		file = fd_api_file_by_symbol(what);
		break;
	default:
		what = "extensions";
		break;
	}
	if (file >= 0) {
		int order[MAX_FILES];
		bool seen[MAX_FILES * 4] = { 0 };
		size_t n = collect(file, order, 0, seen);
		for (size_t i = 0; i < n; i++) {
			const fd_api_file_t *f = fd_api_file(order[i]);
			blobs[i].data = (uint8_t *)f->bytes;
			blobs[i].len = f->len;
		}
		files.n_file_descriptor_proto = n;
		files.file_descriptor_proto = blobs;
		resp.message_response_case =
			GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_FILE_DESCRIPTOR_RESPONSE;
		resp.file_descriptor_response = &files;
	} else {
		error.error_code = 5; /* NOT_FOUND */
		error.error_message = (char *)(what && strcmp(what, "extensions") != 0
		                                       ? "not found"
		                                       : "this server defines no extensions");
		resp.message_response_case =
			GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ERROR_RESPONSE;
		resp.error_response = &error;
	}
	int rc = fd_stream_send(call, &resp.base);
	return rc == -FD_ECANCELLED ? 0 : rc;
}

static int on_v1(fd_call_t *call, const ProtobufCMessage *msg)
{
	return answer(call, (const request_t *)msg);
}

/* v1alpha's request has the same fields; copy them into a v1 request. */
static int on_v1alpha(fd_call_t *call, const ProtobufCMessage *msg)
{
	const Grpc__Reflection__V1alpha__ServerReflectionRequest *a = (const void *)msg;
	request_t r = GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
	r.host = a->host;
	r.message_request_case = (Grpc__Reflection__V1__ServerReflectionRequest__MessageRequestCase)
		a->message_request_case;
	switch (r.message_request_case) {
	case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_BY_FILENAME:
		r.file_by_filename = a->file_by_filename;
		break;
	case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL:
		r.file_containing_symbol = a->file_containing_symbol;
		break;
	case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES:
		r.list_services = a->list_services;
		break;
	case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_ALL_EXTENSION_NUMBERS_OF_TYPE:
		r.all_extension_numbers_of_type = a->all_extension_numbers_of_type;
		break;
	default:
		/* file_containing_extension: answered "no extensions" without its fields. */
		r.message_request_case = GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST__NOT_SET;
		break;
	}
	return answer(call, &r);
}

static int open_stream(fd_call_t *call, const ProtobufCMessage *req)
{
	return 0;
}

static const fd_stream_ops_t v1_ops = { .open = open_stream, .message = on_v1 };
static const fd_stream_ops_t v1alpha_ops = { .open = open_stream, .message = on_v1alpha };

static const fd_method_impl_t v1_methods[] = {
	{ .name = "ServerReflectionInfo", .stream = &v1_ops },
	{ 0 },
};
static const fd_method_impl_t v1alpha_methods[] = {
	{ .name = "ServerReflectionInfo", .stream = &v1alpha_ops },
	{ 0 },
};

int fd_reflection_serve(fd_server_t *srv, fd_health_t *h, fd_err_t *err)
{
	int rc = fd_server_add_service(srv, &grpc__reflection__v1alpha__server_reflection__descriptor,
	                               v1alpha_methods, h, err);
	if (rc == 0)
		rc = fd_server_add_service(srv, &grpc__reflection__v1__server_reflection__descriptor,
		                           v1_methods, h, err);
	return rc;
}
