//! The uWebSockets comparison peer (issue 22): echo on any path, and wsloop's `/topic/NAME`
//! shape — every connection subscribes to NAME on open and every message it sends is published
//! to the topic with `app.publish` (the sender gets its copy too, as on wsloop's /topic).
//! Built against a uWebSockets checkout by `build.sh` (uWebSockets is not a dependency of
//! wsloop); `--cert PEM --key PEM` serves wss:// (needs a build with WITH_OPENSSL=1).
#include "App.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

namespace {

struct PerSocket {
    // Empty for an echo connection; the topic name for a /topic/NAME connection.
    std::string topic;
};

constexpr std::string_view TOPIC_PREFIX = "/topic/";

template <bool SSL>
void serve(uWS::TemplatedApp<SSL> &&app, int port) {
    // The app outlives every handler: publish goes through this pointer.
    static uWS::TemplatedApp<SSL> *self = nullptr;
    self = &app;
    typename uWS::TemplatedApp<SSL>::template WebSocketBehavior<PerSocket> behavior = {
        .compression = uWS::DISABLED,
        // Large enough for every message the load generator sends (wsloop's default limit).
        .maxPayloadLength = 64 * 1024 * 1024,
        .idleTimeout = 120,
        // A fan-out subscriber may fall behind by a whole window of messages: never drop.
        .maxBackpressure = 512 * 1024 * 1024,
        .closeOnBackpressureLimit = false,
        .resetIdleTimeoutOnSend = false,
        .sendPingsAutomatically = false,
        .upgrade =
            [](auto *res, auto *req, auto *context) {
                std::string_view url = req->getUrl();
                PerSocket data;
                if (url.substr(0, TOPIC_PREFIX.size()) == TOPIC_PREFIX) {
                    data.topic = std::string(url.substr(TOPIC_PREFIX.size()));
                }
                res->template upgrade<PerSocket>(std::move(data),
                                                 req->getHeader("sec-websocket-key"),
                                                 req->getHeader("sec-websocket-protocol"),
                                                 req->getHeader("sec-websocket-extensions"),
                                                 context);
            },
        .open =
            [](auto *ws) {
                PerSocket *d = ws->getUserData();
                if (!d->topic.empty()) {
                    ws->subscribe(d->topic);
                }
            },
        .message =
            [](auto *ws, std::string_view message, uWS::OpCode op) {
                PerSocket *d = ws->getUserData();
                if (d->topic.empty()) {
                    ws->send(message, op, false);
                } else {
                    self->publish(d->topic, message, op, false);
                }
            },
    };
    app.template ws<PerSocket>("/*", std::move(behavior))
        .listen("127.0.0.1", port,
                [port](auto *listen_socket) {
                    if (!listen_socket) {
                        std::fprintf(stderr, "uws-peer: cannot listen on port %d\n", port);
                        std::exit(1);
                    }
                    int bound = us_socket_local_port(SSL, (struct us_socket_t *) listen_socket);
                    std::printf("listening on 127.0.0.1:%d\n", bound);
                    std::fflush(stdout);
                })
        .run();
}

}  // namespace

int main(int argc, char **argv) {
    int port = 0;
    const char *cert = nullptr;
    const char *key = nullptr;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!std::strcmp(argv[i], "--port")) {
            port = std::atoi(argv[i + 1]);
        } else if (!std::strcmp(argv[i], "--cert")) {
            cert = argv[i + 1];
        } else if (!std::strcmp(argv[i], "--key")) {
            key = argv[i + 1];
        } else {
            std::fprintf(stderr, "usage: uws-peer --port PORT [--cert PEM --key PEM]\n");
            return 2;
        }
    }
    if (cert && key) {
        serve<true>(uWS::SSLApp({.key_file_name = key, .cert_file_name = cert}), port);
    } else {
        serve<false>(uWS::App(), port);
    }
    return 0;
}
