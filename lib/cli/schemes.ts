/**
 * The schemes the command knows, one file per system in schemes/, each mapping URI
 * parts and query keys to a connector's declared options. Keys are the options' names
 * without their unit suffix (`commitSize` for commitSizeBytes, `commitInterval` for
 * commitIntervalMs), and take units (`1MiB`, `5m`).
 */
import './schemes/stdio.js';
import './schemes/file.js';
import './schemes/kafka.js';
import './schemes/rabbitmq.js';
import './schemes/websocket.js';
import './schemes/s3.js';
import './schemes/kinesis.js';
