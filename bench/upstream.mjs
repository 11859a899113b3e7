// The trivial upstream behind keyward's gateway in the benchmark: 200 "ok".
//   node upstream.mjs PORT
import http from 'node:http';
const [port] = process.argv.slice(2);
http.createServer((req, res) => { req.resume(); res.end('ok'); })
  .listen(Number(port), '127.0.0.1', () => console.log('ready'));
