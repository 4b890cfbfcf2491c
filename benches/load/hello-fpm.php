<?php
// The same hello for php-fpm behind nginx.
header('Content-Type: text/plain');
echo "Hello, world!\n";
