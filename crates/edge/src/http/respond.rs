//! Sends a component's answer so that Spin's HTTP server can write it in one
//! piece.
//!
//! Spin hands a response to its HTTP server (hyper) as soon as the guest
//! sets it, while the guest goes on writing the body. The SDK's default
//! (`#[http_component]` returning a `Response`) sets the response first and
//! writes the body after, without a `Content-Length`, so hyper may flush the
//! head alone and send the body (chunked) in later segments. Spin does not
//! set `TCP_NODELAY`, so a later segment can wait for the client's delayed
//! acknowledgement of the head: the ~40 ms stalls of a few percent of
//! requests under the real Spin. Here the body is written and finished
//! before the response is set, with its `Content-Length`: when hyper gets
//! the response its whole body is already there, and it writes head and
//! body together. A body larger than the stream accepts at once (1 MiB
//! under Spin; no answer of the service comes near) is streamed after the
//! response is set, as the SDK does.

use spin_sdk::http::{OutgoingBody, OutgoingResponse, Response, ResponseOutparam};

/// The most a blocking write may hand the stream in one call (`wasi:io`).
const BLOCKING_WRITE_BYTES: usize = 4096;

/// Sends `response` through `out`, its body complete before the response
/// is set whenever the body stream accepts it in one write.
pub fn respond(mut response: Response, out: ResponseOutparam) {
    let body = std::mem::take(response.body_mut());
    response.set_header("content-length", body.len().to_string());
    let outgoing = match OutgoingResponse::try_from(response) {
        Ok(outgoing) => outgoing,
        Err(e) => {
            eprintln!("respond: the response could not be converted: {e}");
            return;
        }
    };
    let Ok(outgoing_body) = outgoing.body() else {
        eprintln!("respond: the response body was already taken");
        return;
    };
    let Ok(stream) = outgoing_body.write() else {
        eprintln!("respond: the response body's stream was already taken");
        return;
    };
    let fits = stream
        .check_write()
        .is_ok_and(|permit| permit >= body.len() as u64);
    if fits {
        let written = body.is_empty() || stream.write(&body).is_ok();
        drop(stream);
        let finished = written && OutgoingBody::finish(outgoing_body, None).is_ok();
        out.set(outgoing);
        if !finished {
            eprintln!("respond: the response body could not be written before the response");
        }
        return;
    }
    out.set(outgoing);
    for chunk in body.chunks(BLOCKING_WRITE_BYTES) {
        if let Err(e) = stream.blocking_write_and_flush(chunk) {
            eprintln!("respond: the response body could not be written: {e:?}");
            return;
        }
    }
    drop(stream);
    if let Err(e) = OutgoingBody::finish(outgoing_body, None) {
        eprintln!("respond: the response body could not be finished: {e:?}");
    }
}
