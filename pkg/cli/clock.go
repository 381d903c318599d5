package cli

import "time"

var nowFunc = time.Now
