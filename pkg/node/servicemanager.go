package node

import (
	"path/filepath"

	"go.uber.org/zap"

	"github.com/rke2-hanode/rke2-hanode/pkg/config"
	"github.com/rke2-hanode/rke2-hanode/pkg/installer"
)

// newServiceManager builds the service manager service-manager names.
func newServiceManager(c *config.Config, log *zap.Logger) (installer.ServiceManager, func(), error) {
	switch c.ServiceManager {
	case "exec":
		bin, err := installer.FindRKE2(c.RKE2Bin, installer.DefaultSearchPaths)
		if err != nil {
			return nil, nil, err
		}
		m, err := installer.NewExecManager(installer.ExecOptions{
			RKE2Bin:    bin,
			ConfigFile: installer.ConfigPath(c.RKE2ConfigDir),
			LogFile:    filepath.Join(c.DataDir, "rke2-"+c.Role+".log"),
			Logger:     log,
		})
		if err != nil {
			return nil, nil, err
		}
		return m, func() { m.Close() }, nil
	default:
		m, err := installer.OpenSystemdManager(installer.SystemdOptions{Logger: log, ConfigFile: installer.ConfigPath(c.RKE2ConfigDir)})
		if err != nil {
			return nil, nil, err
		}
		return m, func() { m.Close() }, nil
	}
}
