'use strict';
/*
 * Socket.IO 4 peer server for herald-bench --target socketio.
 *
 * A node cluster: the primary process forks N workers (default 2, one per
 * core, as `herald --workers 2`) that share one listening port; the primary
 * accepts connections and hands them to the workers round-robin (node's
 * default scheduling on Linux), so the load is split evenly. Each worker is
 * a Socket.IO server with the Redis adapter: a broadcast to a room is
 * delivered to the worker's own sockets and published once to Redis, from
 * where the other workers deliver it to theirs. WebSocket transport only
 * (no long-polling, so no sticky sessions are needed), no compression, and
 * ws's native frame masking (bufferutil), as Socket.IO's tuning guide advises.
 *
 * Protocol (the bench's driver, bench/src/peer_socketio.c):
 *   emit "sub" (channel) with ack -> socket.join(channel), ack()
 *   emit "pub" (channel, data) with ack -> io.to(channel).emit("m", data),
 *                                          ack() after the emit
 *
 * Configuration: command-line options override the environment.
 *   --host H        SIO_HOST         127.0.0.1
 *   --port P        SIO_PORT         8092
 *   --redis-port R  SIO_REDIS_PORT   16392 (redis-server on 127.0.0.1)
 *   --workers N     SIO_WORKERS      2
 * The primary prints "ready primary=<pid> workers=<pid>,<pid>" on stdout
 * once every worker is listening, and writes the same pids, one a line
 * (primary first), to --pid-file FILE / SIO_PID_FILE if given.
 */
const cluster = require('node:cluster');
const fs = require('node:fs');
const http = require('node:http');

function options() {
    const o = {
        host: process.env.SIO_HOST || '127.0.0.1',
        port: parseInt(process.env.SIO_PORT || '8092', 10),
        redisPort: parseInt(process.env.SIO_REDIS_PORT || '16392', 10),
        workers: parseInt(process.env.SIO_WORKERS || '2', 10),
        pidFile: process.env.SIO_PID_FILE || '',
    };
    const a = process.argv.slice(2);
    for (let i = 0; i < a.length; i++) {
        const v = a[i + 1];
        switch (a[i]) {
        case '--host': o.host = v; i++; break;
        case '--port': o.port = parseInt(v, 10); i++; break;
        case '--redis-port': o.redisPort = parseInt(v, 10); i++; break;
        case '--workers': o.workers = parseInt(v, 10); i++; break;
        case '--pid-file': o.pidFile = v; i++; break;
        default:
            console.error(`server.js: unknown option ${a[i]}`);
            process.exit(2);
        }
    }
    if (!(o.port > 0) || !(o.redisPort > 0) || !(o.workers > 0)) {
        console.error('server.js: bad --port, --redis-port or --workers');
        process.exit(2);
    }
    return o;
}

function primary(o) {
    const pids = [];
    let listening = 0;
    let stopping = false;
    for (let i = 0; i < o.workers; i++) {
        const w = cluster.fork();
        pids.push(w.process.pid);
        w.on('listening', () => {
            if (++listening !== o.workers) return;
            const line = `ready primary=${process.pid} workers=${pids.join(',')}`;
            if (o.pidFile)
                fs.writeFileSync(o.pidFile, [process.pid, ...pids].join('\n') + '\n');
            console.log(line);
        });
    }
    /* A worker dying is a failed benchmark, not something to hide by
     * restarting it: stop everything. */
    cluster.on('exit', (w, code, signal) => {
        if (!stopping) {
            console.error(`server.js: worker ${w.process.pid} exited (${signal || code})`);
            stop(1);
        } else if (Object.keys(cluster.workers).length === 0) {
            process.exit(0);
        }
    });
    function stop(code) {
        if (stopping) return;
        stopping = true;
        for (const w of Object.values(cluster.workers)) w.process.kill('SIGTERM');
        setTimeout(() => process.exit(code), 3000).unref();
        if (Object.keys(cluster.workers).length === 0) process.exit(code);
    }
    process.on('SIGTERM', () => stop(0));
    process.on('SIGINT', () => stop(0));
}

function worker(o) {
    const { Server } = require('socket.io');
    const { createAdapter } = require('@socket.io/redis-adapter');
    const Redis = require('ioredis');

    const pub = new Redis({ host: '127.0.0.1', port: o.redisPort, lazyConnect: false });
    const sub = pub.duplicate();
    for (const r of [pub, sub]) {
        r.on('error', (e) => console.error(`server.js[${process.pid}]: redis: ${e.message}`));
    }

    const httpServer = http.createServer((req, res) => {
        res.writeHead(404);
        res.end();
    });
    const io = new Server(httpServer, {
        transports: ['websocket'],
        perMessageDeflate: false,
        httpCompression: false,
        serveClient: false,
        cors: { origin: '*' },
    });
    io.adapter(createAdapter(pub, sub));

    io.on('connection', (socket) => {
        socket.on('sub', (channel, ack) => {
            if (typeof channel !== 'string') {
                if (typeof ack === 'function') ack({ error: 'bad channel' });
                return;
            }
            socket.join(channel);
            if (typeof ack === 'function') ack({ ok: true });
        });
        socket.on('pub', (channel, data, ack) => {
            if (typeof channel !== 'string') {
                if (typeof ack === 'function') ack({ error: 'bad channel' });
                return;
            }
            io.to(channel).emit('m', data);
            if (typeof ack === 'function') ack({ ok: true });
        });
    });

    /* Listen only when both Redis connections are up, so "ready" means a
     * publication reaches every worker. */
    let up = 0;
    const onReady = () => {
        if (++up === 2) httpServer.listen(o.port, o.host);
    };
    pub.once('ready', onReady);
    sub.once('ready', onReady);

    process.on('SIGTERM', () => {
        io.close();
        pub.disconnect();
        sub.disconnect();
        process.exit(0);
    });
}

const o = options();
if (cluster.isPrimary) primary(o);
else worker(o);
