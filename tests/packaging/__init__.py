"""What is shipped, checked as shipped: the wheel, the container image and the compose stack
(read as data everywhere, run for real where a Docker engine answers), the install without the
``local`` extra, the shipped monitoring rules, and the developer tools CI relies on."""
